"""Who can reach a role's API, and with what: the rules of `ttstack controller|agent` at start (docs/security.md).

- A key (`--api-key`, TTSTACK_API_KEY; the agent's own DATA_DIR/api_key): every /api/* call needs it.
- No key, bound to loopback: allowed, and only loopback Host names are accepted (a page that rebinds its
  DNS name to 127.0.0.1 cannot reach the API from a browser).
- No key, bound to another address: refused at start (exit 2), unless `--insecure-no-auth` says so
  explicitly; the role then warns at start and in its /api/info (agent) or /api/status (controller).
"""

from __future__ import annotations

import ipaddress

LOOPBACK_HOST_NAMES = ["localhost", "127.0.0.1", "[::1]"]
INSECURE_ENV = "TTSTACK_INSECURE_NO_AUTH"  # set by `ttstack ROLE --insecure-no-auth` (settings.INSECURE_NO_AUTH)

AUTH_KEY, AUTH_LOOPBACK, AUTH_INSECURE = "api-key", "none-loopback-only", "none-insecure"
AUTH_MODES = (AUTH_KEY, AUTH_LOOPBACK, AUTH_INSECURE)


def is_loopback(addr: str) -> bool:
    """127.0.0.0/8, ::1 or `localhost`; 0.0.0.0 and :: (every address) are not."""
    if addr.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind: str, listed: list[str] | None) -> list[str]:
    """Django's ALLOWED_HOSTS: the names listed (TTSTACK_ALLOWED_HOSTS, e.g. behind a proxy), else loopback
    names when bound to loopback, else any name (a key guards the API, or --insecure-no-auth said none does)."""
    if listed:
        return list(listed)
    return list(LOOPBACK_HOST_NAMES) if is_loopback(bind) else ["*"]


def insecure_warning(bind: str, port: int | str) -> str:
    return (f"insecure: --insecure-no-auth: the API at {bind}:{port} takes every request without a key, from "
            "anyone who can reach it")


def refusal(role: str, bind: str, port: int | str) -> str:
    what = "run VMs on this host" if role == "agent" else "control the whole fleet"
    made = " --make-key to make one into the data dir (printed once)," if role == "agent" else ""
    return (f"ttstack {role}: refusing to listen on {bind}:{port} without a key: anyone who can reach it could "
            f"{what}. Give --api-key KEY (or TTSTACK_API_KEY),{made} or --bind 127.0.0.1; "
            "--insecure-no-auth serves without a key anyway.")


def auth_report(api_key: str | None, bind: str, port: int | str, insecure: bool) -> dict:
    """The `auth` and `warnings` fields of the agent's /api/info and the controller's /api/status."""
    if api_key:
        return {"auth": AUTH_KEY, "warnings": []}
    if insecure:
        return {"auth": AUTH_INSECURE, "warnings": [insecure_warning(bind, port)]}
    return {"auth": AUTH_LOOPBACK, "warnings": []}


def report() -> dict:
    """auth_report() of this process (its settings and the address `ttstack ROLE` bound)."""
    from django.conf import settings

    return auth_report(settings.API_KEY, settings.BIND_ADDR, settings.PORT, settings.INSECURE_NO_AUTH)


AUTH_HELP = (f"{AUTH_KEY}: every /api/* call needs the key; {AUTH_LOOPBACK}: no key, bound to loopback, loopback "
             f"Host names only; {AUTH_INSECURE}: no key on a reachable address (--insecure-no-auth)")
