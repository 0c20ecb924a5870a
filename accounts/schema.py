"""OpenAPI (drf-spectacular) description of the API-key authentication."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = ["ApiKeyBearer", "ApiKeyHeader"]
    priority = 1

    def get_security_requirement(self, auto_schema):
        # Two requirement objects: either scheme satisfies the operation. One object naming both
        # would mean "send both" (OpenAPI 3: the schemes of one requirement object are ANDed).
        return [{name: []} for name in self.name]

    def get_security_definition(self, auto_schema):
        description = (
            "A Candlestack API key (`cs_live_…` or `cs_test_…`), created in the account API "
            "(`POST /v1/account/keys`). Send it either way; failures are `api-key-*` problems."
        )
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "cs_live_<12>_<38>",
                "description": description,
            },
            {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": description},
        ]
