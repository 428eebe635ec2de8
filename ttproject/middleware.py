"""Middleware of every role: a request id, the request body limit, security headers Django does not set."""

import logging
import uuid

from django.conf import settings
from django.http import JsonResponse

from ttproject.api.exceptions import body_too_large_detail

log = logging.getLogger(__name__)

# Pages load only our own assets; WebSockets go back to the same host.
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'; form-action 'self'"
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = getattr(settings, "CONTENT_SECURITY_POLICY", DEFAULT_CSP)

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.policy)
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


class RequestIdMiddleware:
    """Gives every request an id: `request.request_id`, the X-Request-ID response header, the log line of a
    failure. A 500 reply names it instead of the internal error, so a report leads to the traceback."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = uuid.uuid4().hex
        response = self.get_response(request)
        response.headers.setdefault("X-Request-ID", request.request_id)
        return response

    def process_exception(self, request, exception):
        # Django logs the traceback next ("Internal Server Error: PATH"); this line ties it to the id.
        log.error("request %s failed: %s", getattr(request, "request_id", "-"), type(exception).__name__)


class BodySizeLimitMiddleware:
    """A body declared larger than DATA_UPLOAD_MAX_MEMORY_SIZE answers 413 before anything reads it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"detail": "Content-Length is not a number."}, status=400)
        if limit is not None and length > limit:
            return JsonResponse({"detail": body_too_large_detail()}, status=413)
        return self.get_response(request)
