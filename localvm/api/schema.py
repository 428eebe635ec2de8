"""Teach drf-spectacular localvm's X-Local-Token authentication, so /api/docs/ offers it."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class LocalTokenScheme(OpenApiAuthenticationExtension):
    target_class = "localvm.auth.LocalTokenAuthentication"
    name = "localToken"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Local-Token",
                "description": "The token in ~/.tartvm-manager/token."}
