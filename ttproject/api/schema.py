"""Teach drf-spectacular our authentication classes, so /api/docs/ offers them."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "ttproject.api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "The operators' --api-key."}


class OwnerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "ttproject.api.auth.OwnerTokenAuthentication"
    name = "ownerToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An owner's personal API token."}

