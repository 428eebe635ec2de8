"""Before `ttstack localvm` serves: the token file exists (0600 in a 0700 directory)."""

from .auth import ensure_token, token_path


def prepare():
    try:
        ensure_token()
    except OSError as exc:
        raise SystemExit(f"ttstack localvm: cannot create the token file {token_path()}: {exc}") from None
