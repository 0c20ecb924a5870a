"""The API gateway: the base class of every public /v1/ data endpoint.

Every public endpoint subclasses :class:`PublicAPIView` and declares, next to the view:
``endpoint_name`` (the name used for rate limits, plan gating and metering) and ``credit_cost``
(credits one call costs). The gateway layer runs before the view: API-key authentication
(accounts), rate limit + monthly quota (billing plans, atomic in Redis), and metering of every
answered request. Views stay thin and know nothing of it.
"""

from __future__ import annotations

from rest_framework.views import APIView

from accounts.authentication import ApiKeyAuthentication
from accounts.permissions import HasMarketDataRead


class PublicAPIView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasMarketDataRead]
    endpoint_name: str = ""
    credit_cost: int = 1
