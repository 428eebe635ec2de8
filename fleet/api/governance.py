"""The owners' governance API: extend an environment, quotas, the event record.

- `POST /api/envs/{id}/extend` `{"lifetime": s}` or `{"expires_at": t}` (fleet.deadlines)
- `GET /api/quotas/me`; operators: `GET /api/quotas`, `GET|PUT|DELETE /api/quotas/{owner}` (`*`: everyone's
  default) (fleet.quotas)
- `GET /api/events?since=&target=&actor=&type=&limit=&cursor=` (fleet.events; owners: their envs' events)
"""

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from ttproject.api import pagination
from ttproject.api.auth import is_operator, principal

from .. import conf, deadlines, events, queries, quotas
from ..models_governance import QUOTA_FIELDS, Event, Quota
from .audit import Audited, actor_name
from .serializers import EnvironmentSerializer, errors


class ExtendSerializer(serializers.Serializer):
    """A new deadline: `lifetime` seconds from now (0 = never expires) or `expires_at`; exactly one."""

    lifetime = serializers.IntegerField(min_value=0, max_value=conf.LIFETIME_BOUND, required=False,
                                        help_text="seconds from now; 0 = never expires (operators, unless "
                                                  "TTSTACK_OWNERS_NEVER_EXPIRE)")
    expires_at = serializers.DateTimeField(required=False, help_text="the new deadline")

    def validate(self, attrs):
        if len(attrs) != 1:
            raise serializers.ValidationError("give exactly one of lifetime and expires_at")
        return attrs


class EnvExtend(Audited, APIView):
    audit_resource = "env"
    audit_action = "extend"

    @extend_schema(request=ExtendSerializer, responses={200: EnvironmentSerializer, **errors(400, 404, 409, 422)},
                   operation_id="envs_extend")
    def post(self, request, pk):
        """Move the environment's deadline. Owners: at most TTSTACK_MAX_LIFETIME from now (422 names it)."""
        from .views import visible_envs

        env = visible_envs(request).filter(pk=pk).first()
        if env is None:
            raise Http404(f"environment {pk!r} not found")
        data = ExtendSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deadlines.extend_env(env, **data.validated_data, operator=is_operator(principal(request)),
                             actor=actor_name(request))
        return Response(EnvironmentSerializer(queries.env_detail(pk)).data)


class QuotaSerializer(serializers.ModelSerializer):
    class Meta:
        model = Quota
        fields = ["owner", *QUOTA_FIELDS, "updated_at"]
        read_only_fields = ["owner", "updated_at"]


class QuotaUse(serializers.Serializer):
    limit = serializers.IntegerField(allow_null=True, help_text="null: no limit")
    used = serializers.IntegerField()
    left = serializers.IntegerField(allow_null=True)


class QuotaSummarySerializer(serializers.Serializer):
    owner = serializers.CharField()
    envs, vms, cpu, mem, disk = (QuotaUse() for _ in QUOTA_FIELDS)


class QuotaMe(APIView):
    @extend_schema(responses={200: QuotaSummarySerializer, **errors()}, operation_id="quotas_me")
    def get(self, request):
        """The caller's quota (her own over the default), what she uses and what is left."""
        who = principal(request)
        return Response(quotas.summary(events.OPERATOR if is_operator(who) else who.username))


class OperatorsOnly:
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if not is_operator(principal(request)):
            raise PermissionDenied("quotas are managed by operators")


class QuotaList(OperatorsOnly, APIView):
    @extend_schema(responses={200: QuotaSerializer(many=True), **errors(403)}, operation_id="quotas_list")
    def get(self, request):
        return Response(QuotaSerializer(Quota.objects.all(), many=True).data)


class QuotaDetail(OperatorsOnly, Audited, APIView):
    audit_resource = "quota"

    @extend_schema(responses={200: QuotaSerializer, **errors(403, 404)}, operation_id="quotas_retrieve")
    def get(self, request, owner):
        quota = Quota.objects.filter(owner=owner).first()
        if quota is None:
            raise Http404(f"no quota row for {owner!r}")
        return Response(QuotaSerializer(quota).data)

    @extend_schema(request=QuotaSerializer, responses={200: QuotaSerializer, **errors(400, 403)},
                   operation_id="quotas_update")
    def put(self, request, owner):
        """Set the owner's limits (`*`: the default for everyone); a field left out or null: no limit here."""
        data = QuotaSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = {f: data.validated_data.get(f) for f in QUOTA_FIELDS}
        quota, _ = Quota.objects.update_or_create(owner=owner, defaults=values)
        return Response(QuotaSerializer(quota).data)

    @extend_schema(responses={204: None, **errors(403, 404)}, operation_id="quotas_destroy")
    def delete(self, request, owner):
        if not Quota.objects.filter(owner=owner).delete()[0]:
            raise Http404(f"no quota row for {owner!r}")
        return Response(status=status.HTTP_204_NO_CONTENT)


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = list(events.FIELDS)


class EventFilter(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="events at or after this time")
    target = serializers.CharField(required=False, max_length=200, help_text="env/ID, vm/ID, host/ID, quota/OWNER")
    actor = serializers.CharField(required=False, max_length=150, help_text="operator, an owner, or system")
    type = serializers.CharField(required=False, max_length=64, help_text="an action (env.state) or its family (env)")


def visible_events(request, filters: dict):
    who = principal(request)
    return events.matching(events.visible_to(Event.objects.all(), None if is_operator(who) else who.username),
                           **filters)


class EventList(APIView):
    @extend_schema(responses={200: pagination.paged(EventSerializer, "Event"), **errors(400, 404)},
                   operation_id="events_list",
                   parameters=[EventFilter, *pagination.PARAMETERS])
    def get(self, request):
        """Recorded events, oldest first. Owners see their own environments' events only. Live: /ws/events."""
        filters = EventFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        rows = visible_events(request, filters.validated_data)
        if not pagination.wanted(request):
            return Response(EventSerializer(rows.order_by("-id")[:1000][::-1], many=True).data)
        page = pagination.paginate(request, rows, ["id"])
        return pagination.page_reply(EventSerializer(page.rows, many=True).data, page)

