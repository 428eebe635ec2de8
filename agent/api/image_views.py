"""Agent image routes: list (GET /api/images), import (POST, a task), delete, and a ticket for another
agent to download one (agent/image_serve.py). Thin: the work is in image_import, image_store, image_serve."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.response import Response

from agent import image_import, image_lookup, image_serve, image_store
from agent.api.serializers import ImageSerializer
from agent.api.views import errors

SHA256 = r"^[0-9a-fA-F]{64}\Z"


class ImportImageSerializer(serializers.Serializer):
    """Where the image comes from (exactly one of url and path), its sha256 and its format."""

    name = serializers.CharField(max_length=255, help_text="disk: [A-Za-z0-9._+-]; docker-archive: the reference "
                                                           "the loaded image is tagged with")
    url = serializers.URLField(required=False, help_text="http(s) URL")
    path = serializers.CharField(required=False, help_text="absolute path of a file on the agent's host")
    sha256 = serializers.RegexField(SHA256, help_text="of the file; the image appears only when it matches")
    format = serializers.ChoiceField(choices=image_store.FORMATS, required=False,
                                     help_text="default: from the source's suffix (.qcow2, .raw/.img, .tar)")

    def validate_url(self, value):
        if not value.startswith(("http://", "https://")):
            raise serializers.ValidationError("only http and https URLs are imported")
        return value

    def validate(self, data):
        if ("url" in data) == ("path" in data):
            raise serializers.ValidationError({"url": ["give exactly one of url and path"]})
        return data


TASK_REPLY = inline_serializer("ImageTaskStarted", {
    "task": serializers.CharField(help_text="the import task: GET /api/tasks/{id}, ws /ws/tasks/{id}"),
    "name": serializers.CharField(), "status": serializers.CharField()})
TICKET_REPLY = inline_serializer("ImageTicket", {
    "name": serializers.CharField(), "path": serializers.CharField(help_text="GET it on this agent, no key needed"),
    "expires_at": serializers.IntegerField(help_text="unix time"), "sha256": serializers.CharField(),
    "size": serializers.IntegerField(), "format": serializers.CharField()})


@extend_schema(methods=["GET"], responses={200: ImageSerializer(many=True), **errors()})
@extend_schema(methods=["POST"], request=ImportImageSerializer, responses={
    202: OpenApiResponse(TASK_REPLY, description="import started"), **errors(400, 409, 501)})
@api_view(["GET", "POST"])
def images(request):
    """GET: disk images of the storage and the other engines' images. POST: import one (a task)."""
    if request.method == "GET":
        return Response(image_lookup.list_images())
    body = ImportImageSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    data = body.validated_data
    task = image_import.start_import(data["name"], data.get("url") or data["path"], data["sha256"],
                                     data.get("format"))
    return Response({"task": task.id, "name": task.target, "status": task.status}, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses={200: inline_serializer("ImageDeleted", {
    "name": serializers.CharField(), "kind": serializers.CharField(), "deleted": serializers.BooleanField()}),
    **errors(400, 404, 409)})
@api_view(["DELETE"])
def image_detail(request, name):
    """Remove an image from this host; 409 while a VM of this agent uses it."""
    return Response(image_store.delete_image(name))


@extend_schema(request=None, responses={200: TICKET_REPLY, **errors(400, 404, 422)})
@api_view(["POST"])
def image_ticket(request, name):
    """A short-lived URL path another agent downloads this disk image from (TTSTACK_IMAGE_TICKET_TTL)."""
    return Response(image_serve.issue_ticket(name))
