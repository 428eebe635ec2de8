"""How the localvm page gets in, the way Jupyter's does: never through a token written into the page.

`ttstack localvm` prints, at start, a URL with a one-time login token (`ttstack manage localvm page_url`
prints another). Opening it exchanges the token for a session: an HttpOnly, SameSite=Strict cookie, and a
redirect to the page without the token. The page's script then calls the API with that cookie (and a CSRF
token for unsafe methods); `X-Local-Token` (the file token) stays the API's way for scripts and the CLI.

A login token is kept only as the name of an empty file, its SHA-256, in TOKEN_DIR/page-logins (0700, files
0600): whoever reads the directory learns nothing to log in with. Redeeming it removes the file, so it works
once, in whichever process opens it first. Unused tokens expire after LOGIN_TTL.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

from .auth import token_dir

LOGIN_TTL = 24 * 3600  # seconds an unused login URL stays valid
SESSION_FLAG = "localvm_page"  # set in the session of a browser that redeemed a login URL


def logins_dir() -> Path:
    path = token_dir() / "page-logins"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_login_token() -> str:
    """A fresh one-time login token (its digest kept, 0600 from the moment the file exists)."""
    token = secrets.token_urlsafe(32)
    os.close(os.open(logins_dir() / _digest(token), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return token


def login_url(port: int | str, token: str | None = None) -> str:
    return f"http://127.0.0.1:{port}/?token={token or new_login_token()}"


def redeem(token: str | None) -> bool:
    """True once for a token made by new_login_token() and not expired; the token is used up."""
    if not token or len(token) > 200:
        return False
    path = logins_dir() / _digest(token)
    try:
        fresh = time.time() - path.stat().st_mtime < LOGIN_TTL
        path.unlink()  # the one that removes it wins: one use, even across processes
    except FileNotFoundError:
        return False
    return fresh


def forget_unused() -> None:
    """Drop every login token not redeemed yet (a new start prints a new one)."""
    for path in logins_dir().iterdir():
        path.unlink(missing_ok=True)


def page_session(session) -> bool:
    """Did this session come in through a login URL?"""
    return bool(session is not None and session.get(SESSION_FLAG))
