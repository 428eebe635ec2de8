"""The controller's REST API (fleet contract: hosts, envs, vms, images, status)."""

from django.db import IntegrityError, transaction
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ttproject.api.auth import is_operator, principal
from ttproject.api.exceptions import Conflict, Unprocessable
from ttproject.tasks.runner import submit

from .. import queries, scheduler
from ..agent_client import AgentClient, AgentError
from ..choices import EnvState, HostState, VmState
from ..filtersets import EnvironmentFilterSet, HostFilterSet
from ..loop import delete_env
from ..models import Environment, Host, Vm, reserved_by_host
from ..placement import create_environment, host_caps
from .schemas import (
    EnvironmentRowSerializer,
    EnvironmentSerializer,
    EnvironmentTaskSerializer,
    FleetImageSerializer,
    FleetStatusSerializer,
    HostSerializer,
    VmSerializer,
    errors,
)
from .serializers import CreateEnvSerializer, HostCreateSerializer, HostUpdateSerializer

ENV_TASK = OpenApiResponse(EnvironmentTaskSerializer,
                          description="accepted: the environment and the task carrying the operation out")


def _filtered(filterset_class, request, queryset):
    fs = filterset_class(request.query_params, queryset=queryset)
    if not fs.is_valid():
        raise ValidationError(fs.errors)
    return fs.qs


def visible_envs(request):
    envs = Environment.objects.all()
    who = principal(request)
    if not is_operator(who):
        envs = envs.filter(owner=who.username)
    return envs


class EnvViewSet(viewsets.ViewSet):
    """Environments: a named group of VMs placed across hosts, with a lifetime."""

    lookup_value_regex = "[^/]+"

    def _env(self, request, pk) -> Environment:
        env = visible_envs(request).filter(pk=pk).first()
        if env is None:
            raise Http404(f"environment {pk!r} not found")
        return env

    @extend_schema(responses={200: EnvironmentRowSerializer(many=True), **errors(400)}, parameters=[
        OpenApiParameter("state", str, many=True, enum=EnvState.values, description="one or more states"),
        OpenApiParameter("owner", str),
        OpenApiParameter("expires_before", OpenApiTypes.DATETIME, description="expires_at at or before"),
    ])
    def list(self, request):
        envs = _filtered(EnvironmentFilterSet, request, visible_envs(request))
        return Response(queries.env_rows(envs))

    @extend_schema(request=CreateEnvSerializer, responses={202: ENV_TASK, **errors(400, 409, 422)})
    def create(self, request):
        """Validate, place and reserve; the VMs are created by the returned task (all or nothing)."""
        data = CreateEnvSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        who = principal(request)
        owner = data.validated_data["owner"] if is_operator(who) else who.username
        env, task = create_environment(data.validated_data, owner)
        body = queries.env_detail(env.id)
        body["task"] = task.id
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: EnvironmentSerializer, **errors(404)})
    def retrieve(self, request, pk=None):
        body = queries.env_detail(pk, visible_envs(request))
        if body is None:
            raise Http404(f"environment {pk!r} not found")
        return Response(body)

    @extend_schema(responses={202: OpenApiResponse(EnvironmentTaskSerializer, description=(
        "accepted: the environment (now deleting) and the delete task; should the environment vanish "
        "meanwhile, only `id`, `state` and `task`")), **errors(404)})
    def destroy(self, request, pk=None):
        """Destroy every VM of the environment (idempotent; retried until every agent confirms)."""
        env = self._env(request, pk)
        task = delete_env(env, "requested")
        if task is None:  # already being deleted: hand back the running delete task
            from ttproject.tasks.models import Task

            task = Task.objects.filter(action="fleet.env_delete", target=env.id).order_by("-created_at").first()
            if task is None or task.is_done:
                with transaction.atomic():
                    task = submit("fleet.env_delete", target=env.id, owner=env.owner, params={"env": env.id})
        body = queries.env_detail(env.id) or {"id": env.id, "state": EnvState.DELETING}
        body["task"] = task.id
        return Response(body, status=status.HTTP_202_ACCEPTED)

    def _power(self, request, pk, action_name, via, allowed):
        env = self._env(request, pk)
        with transaction.atomic():
            if not env.set_state(via, only_from=allowed):
                raise Conflict(f"environment {env.id} is {env.state}; cannot {action_name} it now")
            if action_name == "start":
                _check_room_to_start(env)  # raises (and so rolls the claim back) when it does not fit
            task = submit(f"fleet.env_{action_name}", target=env.id, owner=env.owner, params={"env": env.id})
        body = queries.env_detail(env.id)
        body["task"] = task.id
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: ENV_TASK, **errors(404, 409)})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        return self._power(request, pk, "stop", EnvState.STOPPING, [EnvState.ACTIVE, EnvState.STOPPED])

    @extend_schema(request=None, responses={202: ENV_TASK, **errors(404, 409, 422)})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._power(request, pk, "start", EnvState.STARTING, [EnvState.ACTIVE, EnvState.STOPPED])


def _check_room_to_start(env: Environment):
    """Stopped VMs hold only their disk, so their hosts may have given cpu/mem away meanwhile: check,
    with the hosts locked the way placement locks them, that each host still has room for all of the
    environment's VMs on it (counted against what the other environments reserve)."""
    vms = list(env.vms.filter(gone=False, host__isnull=False).values_list("host_id", "state", "cpu", "mem", "disk"))
    waking = {host_id for host_id, state, *_ in vms if state == VmState.STOPPED}
    if not waking:
        return
    need: dict[int, list[int]] = {host_id: [0, 0, 0] for host_id in waking}
    for host_id, _state, cpu, mem, disk in vms:
        if host_id in need:
            need[host_id] = [a + b for a, b in zip(need[host_id], (cpu, mem, disk), strict=True)]
    # PostgreSQL: row locks in id order, like placement; SQLite: the IMMEDIATE transaction serialises.
    hosts = list(Host.objects.select_for_update().filter(pk__in=waking).order_by("id"))
    short = []
    for cap in host_caps(hosts, reserved_by_host([h.id for h in hosts], exclude_env=env.id)):
        reason = scheduler.capacity_reason(cap, scheduler.VmReq("", "", *need[cap.id]))
        if reason:
            short.append(f"{cap.name}: {reason}")
    if short:
        raise Unprocessable(f"cannot start environment {env.id}: its VMs no longer fit on their hosts — "
                            + "; ".join(short))


class VmDetail(APIView):
    @extend_schema(responses={200: VmSerializer, **errors(404)})
    def get(self, request, pk):
        rows = queries.vm_rows(Vm.objects.filter(pk=pk, env__in=visible_envs(request)))
        if not rows:
            raise Http404(f"VM {pk!r} not found")
        return Response(rows[0])


class OperatorOnly:
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if not is_operator(principal(request)):
            from rest_framework.exceptions import PermissionDenied

            raise PermissionDenied("hosts are managed by operators")


HOST_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="the host's id")


@extend_schema_view(retrieve=extend_schema(parameters=[HOST_ID]), partial_update=extend_schema(parameters=[HOST_ID]),
                    destroy=extend_schema(parameters=[HOST_ID]))
class HostViewSet(OperatorOnly, viewsets.ViewSet):
    """Agents the controller places VMs on."""

    def _host(self, pk) -> Host:
        host = Host.objects.filter(pk=pk).first() if str(pk).isdigit() else None
        if host is None:
            raise Http404(f"host {pk!r} not found")
        return host

    @extend_schema(responses={200: HostSerializer(many=True), **errors(400, 403)}, parameters=[
        OpenApiParameter("state", str, enum=HostState.values), OpenApiParameter("drain", bool),
    ])
    def list(self, request):
        return Response(queries.host_rows(_filtered(HostFilterSet, request, Host.objects.all())))

    @extend_schema(request=HostCreateSerializer, responses={201: HostSerializer, **errors(400, 403, 409)})
    def create(self, request):
        """Register an agent: its /api/info is probed first; unreachable -> 400 and nothing saved."""
        data = HostCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        addr, key = data.validated_data["addr"], data.validated_data["api_key"]
        if Host.objects.filter(addr=addr).exists():
            raise Conflict(f"host {addr} is already registered")
        try:
            with AgentClient(addr, key or None) as agent:
                info = agent.info()
        except AgentError as exc:
            raise ValidationError({"addr": [f"cannot register: {exc}"]}) from exc
        host = Host(addr=addr, api_key=key, state=HostState.ONLINE)
        host.apply_info(info)
        from django.utils import timezone

        host.last_seen = timezone.now()
        try:
            with transaction.atomic():
                host.save()
        except IntegrityError as exc:
            raise Conflict(f"host {addr} is already registered") from exc
        return Response(queries.host_dict(host), status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: HostSerializer, **errors(403, 404)})
    def retrieve(self, request, pk=None):
        return Response(queries.host_rows(Host.objects.filter(pk=self._host(pk).pk))[0])

    @extend_schema(request=HostUpdateSerializer, responses={200: HostSerializer, **errors(400, 403, 404)})
    def partial_update(self, request, pk=None):
        """Drain (no new placements) or set the host's own agent key."""
        host = self._host(pk)
        data = HostUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data:
            Host.objects.filter(pk=host.pk).update(**data.validated_data)
        return self.retrieve(request, pk)

    @extend_schema(responses={204: None, **errors(403, 404, 409)})
    def destroy(self, request, pk=None):
        host = self._host(pk)
        with transaction.atomic():
            # Lock the row first, so a placement (which locks hosts too) cannot put VMs on it meanwhile.
            host = Host.objects.select_for_update().filter(pk=host.pk).first()
            if host is None:
                raise Http404(f"host {pk!r} not found")
            live = queries.live_vm_count(host.pk)
            if live:
                raise Conflict(f"host {host.addr} still has {live} VM(s); delete their environments first "
                               "(drain the host to stop new placements)")
            host.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(responses={200: FleetImageSerializer(many=True), **errors()})
@api_view(["GET"])
def images(request):
    """Images across the fleet, each with the hosts that have it."""
    return Response(queries.fleet_images())


@extend_schema(responses={200: FleetStatusSerializer, **errors()})
@api_view(["GET"])
def fleet_status(request):
    """Hosts total/online, environments, VMs, cpu/mem/disk total and used."""
    return Response(queries.fleet_status())


@extend_schema(exclude=True)
@api_view(["GET"])
@permission_classes([AllowAny])
def index(request):
    """A placeholder for the dashboard: what the controller is and where its API lives."""
    return Response({"service": "ttstack controller", "api": "/api/", "docs": "/api/docs/",
                     "status": "/api/status", "admin": "/admin/"})
