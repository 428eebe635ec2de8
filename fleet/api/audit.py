"""Every mutation of the fleet API is recorded as an event (fleet.events), refused ones too.

`Audited` is mixed into the API's views: DRF calls `finalize_response` for every answer, errors included,
so the event has the outcome (the HTTP status, and the `detail` of a refusal). A view names its resource
(`audit_resource`); the action is the view's (`env.create`, `env.stop`, `host.partial_update`...).
"""

from __future__ import annotations

from rest_framework.exceptions import APIException
from rest_framework.permissions import SAFE_METHODS

from ttproject.api.auth import is_operator, principal

from .. import events
from ..models import Environment

ACTION_NAMES = {"destroy": "delete", "partial_update": "update", "put": "set"}


def actor_name(request) -> str:
    who = principal(request)
    return events.OPERATOR if is_operator(who) else who.username


class Audited:
    audit_resource = ""  # env, host, quota
    audit_action = ""  # a plain APIView's name for its POST (a viewset's action is its name)

    def audit_target(self, request, kwargs) -> str:
        key = kwargs.get("pk") or kwargs.get("owner")
        if key is None:
            try:
                data = request.data
            except APIException:  # the body could not be parsed: the refusal itself is recorded
                data = None
            key = (data.get("id") or data.get("addr") or "") if isinstance(data, dict) else ""
        return f"{self.audit_resource}/{key}"

    def audit_owner(self, request, target: str, actor: str) -> str:
        if actor != events.OPERATOR:
            return actor  # an owner's own requests, refused ones on others' envs too, are hers to see
        if self.audit_resource == "env":
            return (Environment.objects.filter(pk=target.split("/", 1)[1]).values_list("owner", flat=True)
                    .first() or "")
        return ""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if request.method not in SAFE_METHODS and response.status_code != 401:
            view_action = self.audit_action or getattr(self, "action", None) or request.method.lower()
            target = self.audit_target(request, kwargs)
            actor = actor_name(request)
            data = getattr(response, "data", None)
            detail = {"detail": data["detail"]} if isinstance(data, dict) and "detail" in data else {}
            events.record(f"{self.audit_resource}.{ACTION_NAMES.get(view_action, view_action)}", target,
                          actor=actor, owner=self.audit_owner(request, target, actor),
                          outcome=str(response.status_code), detail=detail,
                          request_id=getattr(request._request, "request_id", ""))
        return response
