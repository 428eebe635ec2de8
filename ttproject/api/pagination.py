"""`?limit=&cursor=` on list endpoints: keyset pages, stable while rows are added.

Without either parameter a list answers the plain list it always did (the fleet contract's). With them it
answers `{"results": [...], "next": CURSOR|null}`; `next` is passed back as `?cursor=` for the following
page (a cursor it did not give out: 404, as DRF's CursorPagination answers). A cursor is the last row's ordering key, encoded (opaque to clients): the next page starts after it
whatever was inserted or deleted meanwhile, and reading it costs one indexed range query.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db.models import Q

from ttproject.errors import Invalid, NotFound

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def wanted(request) -> bool:
    return "limit" in request.query_params or "cursor" in request.query_params


@dataclass
class Page:
    rows: object  # the queryset restricted to this page, in the list's order
    next: str | None


def _limit(request) -> int:
    raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be a whole number from 1 to {MAX_LIMIT}", errors={"limit": [raw]})
    return limit


def _decode(request, model, keys: list[str]) -> list | None:
    raw = request.query_params.get("cursor")
    if not raw:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(raw.encode() + b"=" * (-len(raw) % 4)))
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError("wrong shape")
        return [model._meta.get_field(key.lstrip("-")).to_python(v) for key, v in zip(keys, values, strict=True)]
    except (ValueError, TypeError, ValidationError) as exc:  # bad base64/JSON, a value its field refuses
        # 404 like DRF's own CursorPagination: no page is found at that cursor
        raise NotFound(f"no page at cursor {raw[:64]!r}: not a cursor this list gave out") from exc


def _encode(values) -> str:
    text = json.dumps([v.isoformat() if hasattr(v, "isoformat") else v for v in values])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _after(keys: list[str], values: list) -> Q:
    """Rows after `values` in the order of `keys` ('-name' descending): (k1 past v1) or (k1 = v1 and k2 past
    v2) or ..."""
    q = Q(pk__in=[])
    for i, key in enumerate(keys):
        name = key.lstrip("-")
        step = Q(**{f"{name}__{'lt' if key.startswith('-') else 'gt'}": values[i]})
        for prev, value in zip(keys[:i], values[:i], strict=False):
            step &= Q(**{prev.lstrip("-"): value})
        q |= step
    return q


def paginate(request, queryset, keys: list[str]) -> Page:
    """The page `?limit=&cursor=` asks for; `keys` is the list's order and must end in a unique field."""
    limit = _limit(request)
    after = _decode(request, queryset.model, keys)
    rows = queryset.order_by(*keys)
    if after is not None:
        rows = rows.filter(_after(keys, after))
    found = list(rows.values_list(*[k.lstrip("-") for k in keys], "pk")[:limit + 1])
    more = len(found) > limit
    found = found[:limit]
    return Page(queryset.filter(pk__in=[r[-1] for r in found]).order_by(*keys),
                _encode(found[-1][:-1]) if more else None)


def page_reply(results: list, page: Page):
    from rest_framework.response import Response

    return Response({"results": results, "next": page.next})


def _parameters():
    from drf_spectacular.utils import OpenApiParameter

    return [OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                             description="page size: the answer is then {results, next} instead of the plain list"),
            OpenApiParameter("cursor", str, description="the `next` of the previous page (404: not a cursor "
                                                        "this list gave out)")]


PARAMETERS = _parameters()


def paged(serializer_class, name: str):
    """The response schema of a list that pages on request: the plain list, or {results, next}."""
    from drf_spectacular.utils import PolymorphicProxySerializer, inline_serializer
    from rest_framework import serializers

    page = inline_serializer(f"Paged{name}", {"results": serializer_class(many=True),
                                               "next": serializers.CharField(allow_null=True)})
    return PolymorphicProxySerializer(component_name=f"{name}List", serializers=[serializer_class(many=True), page],
                                      resource_type_field_name=None, many=False)
