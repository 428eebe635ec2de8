"""The controller's REST API (fleet contract: hosts, envs, vms, images, status)."""

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

from .. import lifecycle, queries
from ..choices import EnvState, HostState
from ..filtersets import EnvironmentFilterSet, HostFilterSet
from ..hosts import register_host, remove_host
from ..models import Environment, Host, Vm
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
        env, task = lifecycle.create_env(data.validated_data, owner)
        return self._accepted(env, task)

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
        return self._accepted(env, lifecycle.request_delete(env))

    def _accepted(self, env: Environment, task) -> Response:
        """202: the environment as it is now (only id and state should it be gone already) and the task."""
        body = queries.env_detail(env.id) or {"id": env.id, "state": EnvState.DELETING}
        body["task"] = task.id
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: ENV_TASK, **errors(404, 409)})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        env = self._env(request, pk)
        return self._accepted(env, lifecycle.stop_env(env))

    @extend_schema(request=None, responses={202: ENV_TASK, **errors(404, 409, 422)})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        env = self._env(request, pk)
        return self._accepted(env, lifecycle.start_env(env))


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
        host = register_host(data.validated_data["addr"], data.validated_data["api_key"])
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
        remove_host(self._host(pk).pk)
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
