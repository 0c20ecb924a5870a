"""A URLconf for tests: the project's routes plus one trivial public endpoint behind the gateway."""

from django.urls import path
from rest_framework.response import Response

from apiplatform.gateway import PublicAPIView
from apiplatform.urls import urlpatterns as project_urlpatterns


class WhoAmI(PublicAPIView):
    endpoint_name = "test.whoami"
    credit_cost = 1

    def get(self, request):
        principal = request.auth
        return Response(
            {
                "key_id": principal.key_id,
                "organization_id": principal.organization_id,
                "organization_slug": principal.organization_slug,
                "environment": principal.environment,
                "user": str(request.user),
            }
        )


urlpatterns = [*project_urlpatterns, path("v1/test/whoami", WhoAmI.as_view())]
