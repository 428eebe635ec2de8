"""Agent API views: thin wrappers around the domain modules (lifecycle, guest_state, hostinfo, image_lookup).
Domain errors leave as HTTP through the global handler (ttproject.api.exceptions)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.response import Response

from agent import guest_state, hostinfo, image_lookup, lifecycle
from agent.api.serializers import CreateVmSerializer, ImageSerializer, InfoSerializer, VmSerializer
from agent.models import Vm


@extend_schema(responses=InfoSerializer)
@api_view(["GET"])
def info(request):
    """Host id, engines (probed), storage, resources (total and reserved by this agent's VMs), images."""
    return Response(hostinfo.info())


@extend_schema(responses=ImageSerializer(many=True))
@api_view(["GET"])
def images(request):
    """Disk images of the image directory and the docker engine's local images."""
    return Response(image_lookup.list_images())


class VmViewSet(viewsets.ViewSet):
    lookup_value_regex = r"[^/]+"

    @extend_schema(responses=VmSerializer(many=True))
    def list(self, request):
        vms = guest_state.refresh_all(list(Vm.objects.all()))
        return Response(VmSerializer(vms, many=True).data)

    @extend_schema(request=CreateVmSerializer, responses={
        201: VmSerializer, 200: OpenApiResponse(VmSerializer, description="same id, same parameters"),
        409: OpenApiResponse(description="same id, different parameters"),
        422: OpenApiResponse(description="engine not available here / above the host's capacity"),
        500: OpenApiResponse(description="the guest failed to come up; the record stays, state failed")})
    def create(self, request):
        """Create and start a VM; answers once the guest is started."""
        body = CreateVmSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = lifecycle.create_vm(lifecycle.CreateRequest(**body.validated_data))
        if result.failure:
            return Response({"detail": result.failure, "vm": VmSerializer(result.vm).data},
                            status=status.HTTP_500_INTERNAL_SERVER_ERROR)
        return Response(VmSerializer(result.vm).data,
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)

    @extend_schema(responses=VmSerializer)
    def retrieve(self, request, pk=None):
        return Response(VmSerializer(guest_state.refresh(lifecycle.get_vm(pk))).data)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        lifecycle.delete_vm(pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=VmSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        return Response(VmSerializer(lifecycle.stop_vm(pk)).data)

    @extend_schema(request=None, responses=VmSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return Response(VmSerializer(lifecycle.start_vm(pk)).data)
