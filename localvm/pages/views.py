"""The localvm page. Its script calls /api/* with the X-Local-Token, so the page carries the token —
but only to a browser on this machine that asked for a loopback name:

- the server binds 127.0.0.1 only (ttproject/cli.py) and ALLOWED_HOSTS holds only loopback names, so a
  DNS-rebinding page (Host: evil.example) is refused before this view runs;
- the view checks both again itself (REMOTE_ADDR and the Host header must be loopback) and otherwise
  renders the page without the token;
- the response is `Cache-Control: no-store`, and the token sits in a data attribute (CSP allows no
  inline script); another origin cannot read the page (same-origin policy, X-Frame-Options DENY).
"""

import ipaddress

from django.http.request import split_domain_port
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from ..auth import ensure_token

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _is_loopback_ip(value: str) -> bool:
    try:
        return ipaddress.ip_address(value.strip("[]")).is_loopback
    except ValueError:
        return False


def is_local_request(request) -> bool:
    """True when the client is on this machine and addressed us by a loopback name."""
    host, _port = split_domain_port(request.get_host())
    return _is_loopback_ip(request.META.get("REMOTE_ADDR", "")) and (
        host in LOOPBACK_NAMES or _is_loopback_ip(host))


@never_cache
def index(request):
    local = is_local_request(request)
    return render(request, "localvm/index.html", {"token": ensure_token() if local else "", "local": local})
