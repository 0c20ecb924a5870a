"""Test URLconf: the project's routes plus a gated, cost-weighted endpoint behind the gateway."""

from django.urls import path
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from apiplatform.gateway import PublicAPIView
from apiplatform.urls import urlpatterns as project_urlpatterns


class Echo(PublicAPIView):
    """``?status=404|400|500`` fails like a view would; ``?tf=1m`` asks for a plan-gated timeframe;
    ``?limit=N`` makes the call cost 1 credit per 1000 rows (like a big candle request)."""

    endpoint_name = "echo"
    credit_cost = 2

    def get_credit_cost(self, request) -> int:
        limit = request.query_params.get("limit")
        return -(-int(limit) // 1000) if limit else self.credit_cost

    def get(self, request):
        if "flush" in request.query_params:  # a flush runs while this request is in the view
            from billing.metering import usage_flush

            usage_flush()
        status = request.query_params.get("status")
        if status == "404":
            raise NotFound("no such thing")
        if status == "400":
            raise ValidationError({"status": "bad"})
        if status == "500":
            raise RuntimeError("boom")
        if "tf" in request.query_params:
            self.require_timeframe(request, request.query_params["tf"])
        return Response({"ok": True})


class Premium(Echo):
    endpoint_name = "premium"


urlpatterns = [
    *project_urlpatterns,
    path("v1/test/echo", Echo.as_view()),
    path("v1/test/premium", Premium.as_view()),
]
