"""The local token: made on first run into ~/.tartvm-manager/token (dir 0700, file 0600),
sent as `X-Local-Token` on every /api/* route and as `?token=` on the WebSocket."""

import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission

from ttproject.api.auth import OPERATOR, query_token

from . import conf

HEADER = "HTTP_X_LOCAL_TOKEN"


def token_dir() -> Path:
    return Path(conf.TOKEN_DIR)


def token_path() -> Path:
    return token_dir() / "token"


def ensure_token() -> str:
    """Create the token if missing (never overwrite), fix loose permissions, return it."""
    directory = token_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = token_path()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


@lru_cache(maxsize=1)
def _expected() -> str:
    return ensure_token()


def token_matches(given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode(), _expected().encode())


class LocalTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        given = request.META.get(HEADER)
        if given is None:
            raise AuthenticationFailed(HasLocalToken.message)
        if not token_matches(given):
            raise AuthenticationFailed("Invalid X-Local-Token.")
        return OPERATOR, None

    def authenticate_header(self, request):
        return "X-Local-Token"


class HasLocalToken(BasePermission):
    message = "Missing X-Local-Token header (the token is in ~/.tartvm-manager/token)."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated)


def ws_principal(scope):
    """localvm's WebSockets: the local token as `?token=` (settings.WEBSOCKET_AUTHENTICATION)."""
    return OPERATOR if token_matches(query_token(scope)) else None
