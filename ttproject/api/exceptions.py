"""Every error leaves the API as JSON with a `detail`, never as an HTML page, and a 500 never carries the
internal error: it names the request id under which the log has the traceback."""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler

from ttproject import errors

log = logging.getLogger(__name__)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class Unprocessable(APIException):
    """The request is well formed but cannot be carried out (no capacity, engine missing...)."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request cannot be carried out."
    default_code = "unprocessable"


class BadGateway(APIException):
    """A host agent or an upstream service answered badly or not at all."""

    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = "An upstream service failed."
    default_code = "bad_gateway"


def _flatten(data, prefix=""):
    """Turn DRF's nested error dicts/lists into 'field: message' strings."""
    if isinstance(data, dict):
        for key, value in data.items():
            name = key if key in ("non_field_errors", "detail") else f"{prefix}{key}"
            yield from _flatten(value, "" if key in ("non_field_errors", "detail") else f"{name}.")
    elif isinstance(data, list):
        if all(not isinstance(item, (dict, list)) for item in data):
            label = prefix.rstrip(".")
            for item in data:
                yield f"{label}: {item}" if label else str(item)
        else:
            for index, item in enumerate(data):
                yield from _flatten(item, f"{prefix}{index}.")
    else:
        label = prefix.rstrip(".")
        yield f"{label}: {data}" if label else str(data)


# How each domain error leaves the API.
DOMAIN_STATUS = {
    errors.Invalid: 400,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Refused: 422,
    errors.NotSupported: 501,
    errors.UpstreamFailed: 502,
}


def _domain_response(exc: errors.DomainError) -> Response:
    status_code = next((code for cls, code in DOMAIN_STATUS.items() if isinstance(exc, cls)), 400)
    body = {"detail": exc.message}
    if exc.errors:
        body["errors"] = exc.errors
    return Response(body, status=status_code)


def body_too_large_detail() -> str:
    return f"Request body too large: at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."


def internal_error_detail(request) -> str:
    request_id = getattr(request, "request_id", None)
    where = f" (request id {request_id})" if request_id else ""
    return f"Internal server error{where}; the server's log has the details."


def json_exception_handler(exc, context):
    if isinstance(exc, errors.DomainError):
        return _domain_response(exc)
    if isinstance(exc, DjangoValidationError):
        exc_data = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return Response({"detail": "; ".join(_flatten(exc_data)), "errors": exc_data}, status=400)
    if isinstance(exc, RequestDataTooBig):  # a body sent without Content-Length, found too large on reading
        return Response({"detail": body_too_large_detail()}, status=413)
    response = exception_handler(exc, context)
    if response is None:
        request = context.get("request")
        log.error("unhandled error in %s (request id %s)", context.get("view").__class__.__name__,
                  getattr(request, "request_id", "-"), exc_info=exc)
        return Response({"detail": internal_error_detail(request)}, status=500)
    data = response.data
    if isinstance(data, dict) and set(data) == {"detail"}:
        return response
    response.data = {"detail": "; ".join(_flatten(data)) or "Invalid request.", "errors": data}
    return response


def _json_handler(status_code, default):
    def handler(request, exception=None, *args, **kwargs):
        detail = default
        if exception is not None and status_code != 500 and str(exception):
            text = str(exception)
            # Django's resolver404 carries a dict; keep the message short and readable.
            if not text.startswith("{"):
                detail = text
        if status_code == 404:
            detail = f"Not found: {request.path}"
        if status_code == 500:
            detail = internal_error_detail(request)
        return JsonResponse({"detail": detail}, status=status_code)

    return handler


bad_request = _json_handler(400, "Bad request.")
permission_denied = _json_handler(403, "Permission denied.")
page_not_found = _json_handler(404, "Not found.")
server_error = _json_handler(500, "Internal server error.")
