"""The controller's REST API (fleet contract: hosts, envs, vms, status; images in image_views.py). Views validate with the
resource's serializer, call the domain (fleet.lifecycle, fleet.hosts) and answer with the serializer;
domain errors become HTTP answers in ttproject.api.exceptions."""

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from agent.api.serializers import ConsoleQuerySerializer, ConsoleSerializer
from ttproject.api import pagination
from ttproject.api.auth import is_operator, principal
from ttproject.tasks.workers import queue_warnings
from ttproject.vocabulary import NAME_PATTERN

from .. import deadlines, hosts, lifecycle, queries
from ..agent_client import AgentClient
from ..choices import EnvState, HostState
from ..filtersets import EnvironmentFilterSet, HostFilterSet
from ..models import Environment, Host, Vm
from .audit import Audited
from .serializers import (
    EnvironmentRowSerializer,
    EnvironmentSerializer,
    FleetStatusSerializer,
    HostSerializer,
    VmSerializer,
    errors,
)


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


def _accepted(description: str) -> OpenApiResponse:
    return OpenApiResponse(EnvironmentSerializer, description=f"accepted: {description}; `task` is the task "
                                                              "carrying the operation out")


class EnvViewSet(Audited, viewsets.ViewSet):
    """Environments: a named group of VMs placed across hosts, with a lifetime."""

    lookup_value_regex = NAME_PATTERN
    audit_resource = "env"

    def _env(self, request, pk) -> Environment:
        env = visible_envs(request).filter(pk=pk).first()
        if env is None:
            raise Http404(f"environment {pk!r} not found")
        return env

    def _reply(self, envs, pk, code=status.HTTP_200_OK) -> Response:
        row = queries.env_detail(pk, envs)
        if row is None:
            raise Http404(f"environment {pk!r} not found")
        return Response(EnvironmentSerializer(row).data, status=code)

    @extend_schema(responses={200: pagination.paged(EnvironmentRowSerializer, "EnvironmentRow"), **errors(400, 404)},
                   parameters=[
        OpenApiParameter("state", str, many=True, enum=EnvState.values, description="one or more states"),
        OpenApiParameter("owner", str),
        OpenApiParameter("expires_before", OpenApiTypes.DATETIME, description="expires_at at or before"),
        *pagination.PARAMETERS,
    ])
    def list(self, request):
        envs = _filtered(EnvironmentFilterSet, request, visible_envs(request))
        if pagination.wanted(request):
            page = pagination.paginate(request, envs, ["-created_at", "id"])
            return pagination.page_reply(EnvironmentRowSerializer(queries.env_rows(page.rows), many=True).data, page)
        return Response(EnvironmentRowSerializer(queries.env_rows(envs), many=True).data)

    @extend_schema(request=EnvironmentSerializer, responses={
        202: _accepted("the environment, placed and reserved"), **errors(400, 409, 422)})
    def create(self, request):
        """Validate, place and reserve; the VMs are created by the returned task (all or nothing)."""
        data = EnvironmentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        who = principal(request)
        operator = is_operator(who)
        owner = data.validated_data["owner"] if operator else who.username
        deadlines.check_lifetime(data.validated_data["lifetime"], operator=operator)
        env, _task = lifecycle.create_env(data.validated_data, owner, within_quota=not operator)
        return self._reply(Environment.objects.all(), env.id, status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: EnvironmentSerializer, **errors(404)})
    def retrieve(self, request, pk=None):
        return self._reply(visible_envs(request), pk)

    @extend_schema(responses={202: _accepted("the environment, now deleting"), **errors(404)})
    def destroy(self, request, pk=None):
        """Destroy every VM of the environment (idempotent; retried until every agent confirms)."""
        env = self._env(request, pk)
        lifecycle.request_delete(env)
        return self._reply(Environment.objects.all(), env.id, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: _accepted("the environment, now stopping"), **errors(404, 409)})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        lifecycle.stop_env(self._env(request, pk))
        return self._reply(Environment.objects.all(), pk, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: _accepted("the environment, now starting"),
                                            **errors(404, 409, 422)})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        lifecycle.start_env(self._env(request, pk))
        return self._reply(Environment.objects.all(), pk, status.HTTP_202_ACCEPTED)


class VmDetail(APIView):
    @extend_schema(responses={200: VmSerializer, **errors(404)})
    def get(self, request, pk):
        rows = queries.vm_rows(Vm.objects.filter(pk=pk, env__in=visible_envs(request)))
        if not rows:
            raise Http404(f"VM {pk!r} not found")
        return Response(VmSerializer(rows[0]).data)


class VmConsole(APIView):
    @extend_schema(parameters=[ConsoleQuerySerializer], responses={200: ConsoleSerializer, **errors(400, 404, 502)})
    def get(self, request, pk):
        """The tail of the VM's serial console (or its container's output), from its agent: the owner's own
        VMs only (another's answer 404, as if they did not exist)."""
        query = ConsoleQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        vm = Vm.objects.select_related("host").filter(pk=pk, env__in=visible_envs(request), gone=False,
                                                       host__isnull=False).first()
        if vm is None:
            raise Http404(f"VM {pk!r} not found")
        with AgentClient.for_host(vm.host) as agent:
            return Response(ConsoleSerializer(agent.console(vm.id, query.validated_data["lines"])).data)


class OperatorOnly:
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if not is_operator(principal(request)):
            raise PermissionDenied("hosts are managed by operators")


MAX_HOST_ID = 2**63 - 1  # BigAutoField
HOST_ID = OpenApiParameter("id", {"type": "integer", "minimum": 1, "maximum": MAX_HOST_ID}, OpenApiParameter.PATH,
                           description="the host's id")


@extend_schema_view(retrieve=extend_schema(parameters=[HOST_ID]), partial_update=extend_schema(parameters=[HOST_ID]),
                    destroy=extend_schema(parameters=[HOST_ID]), detach=extend_schema(parameters=[HOST_ID]))
class HostViewSet(OperatorOnly, Audited, viewsets.ViewSet):
    """Agents the controller places VMs on."""

    lookup_value_regex = "[0-9]+"
    audit_resource = "host"

    def _host_id(self, pk) -> int:
        if int(pk) > MAX_HOST_ID or not Host.objects.filter(pk=pk).exists():
            raise Http404(f"host {pk!r} not found")
        return int(pk)

    def _reply(self, host_id: int, code=status.HTTP_200_OK) -> Response:
        return Response(HostSerializer(queries.host_rows(Host.objects.filter(pk=host_id))[0]).data, status=code)

    @extend_schema(responses={200: pagination.paged(HostSerializer, "Host"), **errors(400, 403, 404)}, parameters=[
        OpenApiParameter("state", str, enum=HostState.values), OpenApiParameter("drain", bool),
        *pagination.PARAMETERS,
    ])
    def list(self, request):
        found = _filtered(HostFilterSet, request, Host.objects.all())
        if pagination.wanted(request):
            page = pagination.paginate(request, found, ["id"])
            return pagination.page_reply(HostSerializer(queries.host_rows(page.rows), many=True).data, page)
        return Response(HostSerializer(queries.host_rows(found), many=True).data)

    @extend_schema(request=HostSerializer, responses={201: HostSerializer, **errors(400, 403, 409)})
    def create(self, request):
        """Register an agent: its /api/info is probed first; unreachable or not an agent -> 400, nothing saved."""
        data = HostSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        host = hosts.register_host(**data.validated_data)
        return self._reply(host.pk, status.HTTP_201_CREATED)

    @extend_schema(responses={200: HostSerializer, **errors(403, 404)})
    def retrieve(self, request, pk=None):
        return self._reply(self._host_id(pk))

    @extend_schema(request=HostSerializer, responses={200: HostSerializer, **errors(400, 403, 404)})
    def partial_update(self, request, pk=None):
        """Drain (no new placements) or set the host's own agent key."""
        host_id = self._host_id(pk)
        data = HostSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        hosts.update_host(host_id, **data.validated_data)
        return self._reply(host_id)

    @extend_schema(responses={204: None, **errors(403, 404, 409)})
    def destroy(self, request, pk=None):
        hosts.remove_host(self._host_id(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: HostSerializer, **errors(403, 404)})
    @action(detail=True, methods=["post"])
    def detach(self, request, pk=None):
        """Give the host up for good: its VMs become lost, their reservations are freed, environments being
        deleted finish without its agent (others on it go failed); it can then be deleted. Registered again,
        what its agent still runs for this controller is destroyed."""
        host_id = self._host_id(pk)
        hosts.detach_host(host_id)
        return self._reply(host_id)


@extend_schema(responses={200: FleetStatusSerializer, **errors()})
@api_view(["GET"])
def fleet_status(request):
    """Hosts total/online, environments, VMs, cpu/mem/disk total and used."""
    figures = queries.fleet_status()
    figures["warnings"] = [*figures["warnings"], *queue_warnings()]  # here only: the dashboard keeps 8 queries
    return Response(FleetStatusSerializer(figures).data)

