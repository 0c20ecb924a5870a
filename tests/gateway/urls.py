"""Test URLconf: the project's routes plus a gated, cost-weighted endpoint behind the gateway."""

from django.urls import path
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from apiplatform.gateway import PublicAPIView, charge, page_credits
from apiplatform.middleware import never_compress
from apiplatform.urls import urlpatterns as project_urlpatterns


class Echo(PublicAPIView):
    """``?status=404|400|500`` fails like a view would; ``?tf=1m`` asks for a plan-gated timeframe;
    ``?limit=N`` reserves 1 credit per started 1000 rows asked for (like a big candle request) and
    ``?rows=M`` returns M rows, declaring their cost (``charge``: 1 per started 1000, at least 1),
    with a strong ETag and a 304 on ``If-None-Match`` like the market data views; ``?secret=1``
    marks the answer as carrying a secret (never compressed)."""

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
        if "rows" in request.query_params:
            rows = int(request.query_params["rows"])
            etag = f'"rows-{rows}"'
            if request.META.get("HTTP_IF_NONE_MATCH", "").removeprefix("W/") == etag:
                return Response(status=304, headers={"ETag": etag})
            charge(request, page_credits(rows))
            return Response(
                {"data": [{"time": i, "value": "x" * 10} for i in range(rows)]}, headers={"ETag": etag}
            )
        if "secret" in request.query_params:
            return never_compress(Response({"key": "cs_live_" + "s" * 2000}))
        return Response({"ok": True})


class Premium(Echo):
    endpoint_name = "premium"


urlpatterns = [
    *project_urlpatterns,
    path("v1/test/echo", Echo.as_view()),
    path("v1/test/premium", Premium.as_view()),
]
