"""Agent API views: thin wrappers around the domain modules (lifecycle, guest_state, hostinfo); the image
routes are in image_views.py.
Domain errors leave as HTTP through the global handler (ttproject.api.exceptions)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.response import Response

from agent import guest_state, hostinfo, lifecycle, ssh_ready
from agent.api.serializers import (
    ConsoleQuerySerializer,
    ConsoleSerializer,
    CreateFailedSerializer,
    CreateVmSerializer,
    InfoSerializer,
    VmSerializer,
)
from agent.models import Vm
from ttproject.api.schema import error_responses

_ERROR_TEXT = {
    400: "malformed request (the body names the field)",
    401: "API key missing or wrong (when the agent runs with --api-key)",
    404: "no such VM",
    409: "conflicts with the VM's state, or the id exists with other parameters",
    422: "well formed but cannot be carried out here (engine not available, above the host's capacity, "
         "no free host port)",
    501: "not supported by this agent's storage (disk image imports need the file storage)",
    502: "the engine failed; the VM's state says what is left",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Error replies of an endpoint for its schema (401 always), in the agent's words."""
    return error_responses(401, *codes, meanings=_ERROR_TEXT)


@extend_schema(responses={200: InfoSerializer, **errors()})
@api_view(["GET"])
def info(request):
    """Host id, engines (probed), storage, resources (total and reserved by this agent's VMs), images."""
    return Response(hostinfo.info())


class VmViewSet(viewsets.ViewSet):
    lookup_value_regex = r"[^/]+"

    @extend_schema(responses={200: VmSerializer(many=True), **errors()})
    def list(self, request):
        vms = guest_state.refresh_all(list(Vm.objects.all()))
        ssh_ready.ensure_watching(vms)
        return Response(VmSerializer(vms, many=True).data)

    @extend_schema(request=CreateVmSerializer, responses={
        201: VmSerializer, 200: OpenApiResponse(VmSerializer, description="same id, same parameters"),
        **errors(400, 409, 422),
        500: OpenApiResponse(CreateFailedSerializer, description="the guest failed to come up; the record "
                                                                 "stays, state failed")})
    def create(self, request):
        """Create and start a VM; answers once the guest is started."""
        body = CreateVmSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = lifecycle.create_vm(lifecycle.CreateRequest(**body.validated_data))
        if result.failure:
            return Response(CreateFailedSerializer({"detail": result.failure, "vm": result.vm}).data,
                            status=status.HTTP_500_INTERNAL_SERVER_ERROR)
        return Response(VmSerializer(result.vm).data,
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)

    @extend_schema(responses={200: VmSerializer, **errors(404)})
    def retrieve(self, request, pk=None):
        vm = guest_state.refresh(lifecycle.get_vm(pk))
        ssh_ready.ensure_watching([vm])
        return Response(VmSerializer(vm).data)

    @extend_schema(parameters=[ConsoleQuerySerializer], responses={200: ConsoleSerializer, **errors(400, 404, 502)})
    @action(detail=True, methods=["get"])
    def console(self, request, pk=None):
        """The tail of the VM's serial console (qemu's log file) or of its container's output (docker logs)."""
        query = ConsoleQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(ConsoleSerializer(lifecycle.console_tail(pk, query.validated_data["lines"])).data)

    @extend_schema(responses={204: None, **errors(404, 502)})
    def destroy(self, request, pk=None):
        lifecycle.delete_vm(pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: VmSerializer, **errors(404, 409, 422, 502)})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        return Response(VmSerializer(lifecycle.stop_vm(pk)).data)

    @extend_schema(request=None, responses={200: VmSerializer, **errors(404, 409, 422, 502)})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return Response(VmSerializer(lifecycle.start_vm(pk)).data)
