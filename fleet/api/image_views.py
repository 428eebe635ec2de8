"""`/api/images` of the controller: the fleet's images (anyone signed in), putting one on hosts and removing
one (operators). The work is in fleet.image_spread."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from agent.api.image_views import SHA256
from agent.image_store import FORMATS
from ttproject.api.auth import is_operator, principal

from .. import image_spread, queries
from .serializers import FleetImageSerializer, errors


class SpreadImageSerializer(serializers.Serializer):
    """Put image `name` on `hosts` (default: every online host) from `url` (with `sha256`) or from
    `source_host`, a host that has it."""

    name = serializers.CharField(max_length=255)
    url = serializers.URLField(required=False, help_text="http(s) URL every target downloads from")
    sha256 = serializers.RegexField(SHA256, required=False, help_text="required with url")
    format = serializers.ChoiceField(choices=FORMATS, required=False, help_text="default: from the URL's suffix")
    source_host = serializers.IntegerField(required=False, min_value=1, help_text="id of a host that has the "
                                                                                   "image (disk images)")
    hosts = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, allow_empty=False,
                                  help_text="target host ids (default: every online host but the source)")

    def validate(self, data):
        if ("url" in data) == ("source_host" in data):
            raise serializers.ValidationError({"url": ["give exactly one of url and source_host"]})
        if "url" in data and "sha256" not in data:
            raise serializers.ValidationError({"sha256": ["required with url: the image appears only when it "
                                                          "matches"]})
        if "url" in data and not data["url"].startswith(("http://", "https://")):
            raise serializers.ValidationError({"url": ["only http and https URLs are imported"]})
        return data


def _operator(request, what: str):
    if not is_operator(principal(request)):
        raise PermissionDenied(f"images are {what} by operators")


class ImagesView(APIView):
    @extend_schema(responses={200: FleetImageSerializer(many=True), **errors()})
    def get(self, request):
        """Images across the fleet, each with the hosts that have it (and each host's sha256)."""
        return Response(FleetImageSerializer(queries.fleet_images(), many=True).data)

    @extend_schema(request=SpreadImageSerializer, responses={202: OpenApiResponse(inline_serializer(
        "ImageSpreadStarted", {"task": serializers.CharField(), "name": serializers.CharField(),
                               "hosts": serializers.ListField(child=serializers.IntegerField())}),
        description="started: the task's result shows each host's progress"), **errors(400, 403, 404, 422)})
    def post(self, request):
        """Put an image on hosts, from a URL or agent to agent from a host that has it; one task."""
        _operator(request, "put on hosts")
        body = SpreadImageSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        task = image_spread.start_spread(body.validated_data)
        return Response({"task": task.id, "name": task.target, "hosts": task.params["hosts"]},
                        status=status.HTTP_202_ACCEPTED)


class ImageDetail(APIView):
    @extend_schema(parameters=[OpenApiParameter("host", int, many=True, description="only these hosts")],
                   responses={200: inline_serializer("ImageRemoved", {
                       "name": serializers.CharField(),
                       "hosts": serializers.DictField(child=serializers.CharField(), help_text="addr -> deleted "
                                                                                              "or absent")}),
                       **errors(400, 403, 404, 409)})
    def delete(self, request, name):
        """Remove an image from hosts (default: every host that has it); 409 while a VM uses it."""
        _operator(request, "removed")
        raw = request.query_params.getlist("host")
        if not all(value.isdigit() and 0 < int(value) < 2**63 for value in raw):
            raise serializers.ValidationError({"host": ["host ids are positive integers"]})
        return Response(image_spread.delete_everywhere(name, [int(v) for v in raw] or None))
