"""Serializers that write their replies from `.values()` rows.

A resource's serializer is its one description: it validates requests, drf-spectacular reads the
OpenAPI schema from it, and it writes the replies. Replies are built from `.values()` rows rather than
model instances (for 1000 environments x 3 VMs, making the instances alone costs more than a bare
JsonResponse of the same rows), and `row_fields()` tells the query which columns to read, so a
constant number of queries serves any number of rows (NetBox derives its prefetches from the
serializer the same way).

`to_representation(row)` copies each readable field from the row by its `source` (`host.addr` is the
row's `host__addr`): database values and stored JSON need no conversion, the JSON renderer formats
dates. Two kinds of nested fields: a serializer with `source="*"` reads its own fields from the same
row, and a list of row serializers (`ListField(child=...)` or `many=True`) reads a list of rows the
query attached under the field's name.
"""

from __future__ import annotations

from functools import cache
from operator import itemgetter

from rest_framework import serializers


def _key(source: str) -> str:
    return source.replace(".", "__")


def _row_child(field) -> RowSerializerMixin | None:
    """The row serializer of a list-of-rows field, else None."""
    if isinstance(field, (serializers.ListField, serializers.ListSerializer)):
        child = field.child
        return child if isinstance(child, RowSerializerMixin) else None
    return None


def _own_row(field) -> bool:
    """A nested serializer reading the parent's own row (`source="*"`)."""
    return isinstance(field, serializers.BaseSerializer) and field.source == "*"


class RowSerializerMixin:
    """Mix into a (Model)Serializer whose replies are written from `.values()` rows."""

    @classmethod
    @cache
    def row_fields(cls) -> tuple[str, ...]:
        """The `.values()` names to read for this serializer (lists of rows are attached by the caller)."""
        names: list[str] = []
        for field in cls()._readable_fields:
            if _row_child(field) is not None:
                continue
            if _own_row(field):
                names += (field.row_fields() if isinstance(field, RowSerializerMixin)
                          else [_key(f.source) for f in field._readable_fields])
            else:
                names.append(_key(field.source))
        return tuple(dict.fromkeys(names))

    def _reader(self, field):
        child = _row_child(field)
        if child is not None:
            key = field.source
            return lambda row: [child.to_representation(item) for item in row[key]]
        if _own_row(field):
            if isinstance(field, RowSerializerMixin):
                return field.to_representation
            keys = [(f.field_name, _key(f.source)) for f in field._readable_fields]
            return lambda row: {name: row[key] for name, key in keys}
        return itemgetter(_key(field.source))

    def to_representation(self, row: dict) -> dict:
        readers = self.__dict__.get("_readers")
        if readers is None:
            readers = self.__dict__["_readers"] = [(f.field_name, self._reader(f)) for f in self._readable_fields]
        return {name: read(row) for name, read in readers}
