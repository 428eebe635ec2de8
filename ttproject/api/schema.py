"""The OpenAPI schema of every role: our authentication schemes, the error body, and the errors each
operation can answer documented with it.

`AutoSchema` adds to every operation the errors the shared API layer produces for it (400 for a request
with a body or parameters, 401 when it needs credentials, 404 when its path names something, 413 for a
request body), unless the view documents that status itself. Errors a view decides (409, 422, 502...) are
declared on the view with `error_responses(...)`.
"""

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import serializers


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


@extend_schema_serializer(component_name="ApiError")
class ErrorSerializer(serializers.Serializer):
    """Every error reply (ttproject.api.exceptions)."""

    detail = serializers.CharField(help_text="what went wrong, in one line")
    errors = serializers.JSONField(required=False, help_text="the refused fields and their messages, as the "
                                                             "validation reported them (400 replies only)")


ERROR_MEANINGS = {
    400: "invalid request: a malformed body or parameter (refused fields in `errors`)",
    401: "credentials missing or wrong",
    403: "not allowed for these credentials",
    404: "not found",
    409: "conflicts with the current state",
    413: "request body too large",
    422: "well formed but cannot be carried out here and now",
    502: "an upstream service (agent, tart, GitHub) failed",
    503: "a tool this needs is not available",
    504: "an upstream service did not answer in time",
}


def error_responses(*codes: int, meanings: dict[int, str] | None = None) -> dict[int, OpenApiResponse]:
    """Error replies for `extend_schema(responses={...})`, all with the one error body; `meanings` words a
    code the way this API means it (else ERROR_MEANINGS)."""
    meanings = {**ERROR_MEANINGS, **(meanings or {})}
    return {code: OpenApiResponse(ErrorSerializer, description=meanings[code]) for code in sorted(set(codes))}


class AutoSchema(openapi.AutoSchema):
    def _implied_errors(self) -> list[int]:
        has_body = self.method in ("PUT", "PATCH", "POST") and self.get_request_serializer() is not None
        names_something = "{" in self.path
        has_query = any(p.get("in") == "query" for p in self._get_parameters())
        codes = []
        if has_body or names_something or has_query:
            codes.append(400)
        if any(requirement for requirement in self.get_auth()):
            codes.append(401)
        pages = any(p.get("in") == "query" and p.get("name") == "cursor" for p in self._get_parameters())
        if names_something or pages:  # a cursor the list did not give out finds no page (ttproject.api.pagination)
            codes.append(404)
        if has_body:
            codes.append(413)
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, reply in error_responses(*self._implied_errors()).items():
            code = str(code)
            responses.setdefault(code, self._get_response_for_code(reply, code, direction=direction))
        return responses
