"""Authentication shared by the roles.

- The operators' key (`--api-key` / TTSTACK_API_KEY) as `Authorization: Bearer KEY`; when no key is
  configured the API is open, as the fleet contract says.
- Owners' personal tokens (DRF authtoken) as `Authorization: Bearer TOKEN` on the controller.
- The same credentials as `?token=` for browsers' WebSockets.
Keys are compared in constant time. A role with its own credentials (localvm's X-Local-Token) brings its own
classes; the settings name them (REST_FRAMEWORK, WEBSOCKET_AUTHENTICATION), this module knows no app.
"""

import hmac
from urllib.parse import parse_qs

from django.conf import settings
from django.utils.module_loading import import_string
from rest_framework.authentication import BaseAuthentication, TokenAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission


class Operator:
    """The principal behind the operators' API key (or an open API): sees and may do everything."""

    is_authenticated = True
    is_active = True
    is_staff = True
    is_superuser = True
    is_operator = True
    is_anonymous = False
    username = "operator"
    pk = id = None

    def __str__(self):
        return self.username


OPERATOR = Operator()


def key_matches(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(request) -> str | None:
    parts = get_authorization_header(request).split()
    if len(parts) == 2 and parts[0].lower() == b"bearer":
        return parts[1].decode(errors="replace")
    return None


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        if key_matches(bearer_token(request), settings.API_KEY):
            return OPERATOR, None
        return None  # an owner token may still match; the permission decides

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class OwnerTokenAuthentication(TokenAuthentication):
    """An owner's personal API token, sent the same way as the operators' key."""

    keyword = "Bearer"

    def authenticate(self, request):
        if key_matches(bearer_token(request), settings.API_KEY):
            return None  # the operators' key, handled by ApiKeyAuthentication
        return super().authenticate(request)


class ApiKeyRequired(BasePermission):
    """Open when no API key is configured; otherwise any authenticated principal."""

    message = "Authentication required: send 'Authorization: Bearer <api-key>'."

    def has_permission(self, request, view):
        if not settings.API_KEY:
            return True
        return bool(request.user and request.user.is_authenticated)


def principal(request):
    """The operator, or the owner (a Django user) whose data is the only data shown."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return OPERATOR  # open API (no key configured)
    if getattr(user, "is_operator", False) or user.is_staff:
        return OPERATOR
    return user


def is_operator(who) -> bool:
    return getattr(who, "is_operator", False)


def query_token(scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode()).get("token")
    return values[0] if values else None


def ws_principal(scope):
    """Who opened this WebSocket (None = refuse): the role's WEBSOCKET_AUTHENTICATION decides."""
    return import_string(settings.WEBSOCKET_AUTHENTICATION)(scope)


def api_key_ws_principal(scope):
    """The agent's WebSockets: the operators' key as `?token=`, or anyone while the API is open."""
    if not settings.API_KEY or key_matches(query_token(scope), settings.API_KEY):
        return OPERATOR
    return None


def owner_ws_principal(scope):
    """The controller's WebSockets: the operators' key or an owner's token as `?token=`, or the page's
    session; anyone while the API is open."""
    from rest_framework.authtoken.models import Token

    token = query_token(scope)
    if key_matches(token, settings.API_KEY):
        return OPERATOR
    if token:
        found = Token.objects.select_related("user").filter(key=token, user__is_active=True).first()
        if found:
            return OPERATOR if found.user.is_staff else found.user
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        return OPERATOR if user.is_staff else user
    if not settings.API_KEY:
        return OPERATOR
    return None
