"""The localvm page. Its script calls /api/* with the session a one-time login URL gave this browser
(localvm.page_login): the page itself carries no token, so no other local user can read one from it.

- the server binds 127.0.0.1 only and ALLOWED_HOSTS holds only loopback names, so a DNS-rebinding page
  (Host: evil.example) is refused before this view runs; the view checks both again itself (REMOTE_ADDR
  and the Host header must be loopback) and otherwise neither logs in nor shows the page;
- `/?token=T` redeems the one-time token T for a session (HttpOnly, SameSite=Strict cookie) and redirects
  to `/`, so the token leaves the address bar at once; a used or unknown token gets a 403 page;
- the response is `Cache-Control: no-store`; another origin cannot read the page (same-origin policy,
  X-Frame-Options DENY) nor send the cookie (SameSite=Strict); unsafe API methods need the CSRF token.
"""

import ipaddress

from django.http.request import split_domain_port
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from ..page_login import SESSION_FLAG, page_session, redeem

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
    if local and "token" in request.GET:
        if not redeem(request.GET["token"]):
            return render(request, "localvm/index.html", {"local": True, "signed_in": False, "refused": True},
                          status=403)
        request.session.cycle_key()  # a new session id for the new privilege (no session fixation)
        request.session[SESSION_FLAG] = True
        return redirect("localvm-page")
    signed_in = local and page_session(request.session)
    return render(request, "localvm/index.html", {"local": local, "signed_in": signed_in})
