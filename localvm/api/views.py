"""The de taartenfabriek API (../shared/seeds/002): settings, tart version, VMs, images, VM actions.

Every route needs the X-Local-Token (the app's default authentication). Actions answer 202 with their
Task; the worker runs them (localvm/jobs.py).
"""

from django.db import connection, transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from ttproject.api.exceptions import BadGateway, Conflict, Unprocessable
from ttproject.api.schema import error_responses as errors
from ttproject.tasks.models import Task, TaskStatus
from ttproject.tasks.runner import submit
from ttproject.tasks.serializers import TaskSerializer

from .. import github, inventory, jobs, tart
from .. import validation as v
from . import serializers as s


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "tart is not available."


class GatewayTimeout(APIException):
    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    default_detail = "tart did not answer in time."


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, tart.NotFound):
        return NotFound(str(exc))
    if isinstance(exc, tart.TartMissing):
        return ServiceUnavailable(str(exc))
    if isinstance(exc, tart.TartTimeout):
        return GatewayTimeout(str(exc))
    if isinstance(exc, tart.TartError):
        return BadGateway(f"tart failed: {exc}")
    if isinstance(exc, github.TokenMissing):
        return Unprocessable(str(exc))
    if isinstance(exc, github.GitHubError):
        return BadGateway(str(exc))
    return exc


# What a view that asks tart may answer besides its own errors.
TART_ERRORS = errors(502, 503, 504)
# The {name} of the VM routes: a local VM or a pulled OCI image (whose name has '/' and ':').
NAME = OpenApiParameter("name", str, OpenApiParameter.PATH, pattern=f"^{v.KNOWN_FORM_PATTERN}$",
                        description="A VM name, or the reference of a pulled OCI image")


class LocalView(APIView):
    """Turns tart and GitHub failures into JSON errors with a clear detail."""

    def handle_exception(self, exc):
        return super().handle_exception(_translate(exc))


def _flag(request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes", "on")


def _checked_name(name: str) -> str:
    if not v.is_known_form(name):
        raise ValidationError({"detail": f"Invalid VM name {name!r}."})
    return name


def _listing() -> dict[str, dict]:
    """`tart list` by name, asked now (actions must not trust a stale cache). Ask once per request."""
    by_name: dict[str, dict] = {}
    for item in tart.list_vms():
        by_name.setdefault(item.get("Name"), item)
    return by_name


def _existing(name: str, listing: dict[str, dict] | None = None) -> dict:
    _checked_name(name)
    item = (_listing() if listing is None else listing).get(name)
    if item is None:
        raise NotFound(f"VM {name!r} does not exist.")
    return item


def _local_vm(name: str, verb: str) -> dict:
    """The VM, which must be a local one: an OCI image cannot be started or stopped."""
    item = _existing(name)
    if str(item.get("Source", "")).lower() != "local":
        done = {"start": "started", "stop": "stopped"}[verb]
        raise Unprocessable(f"{name!r} is an OCI image, not a local VM: it cannot be {done}. Clone it first "
                            f"(POST /api/vms/<name>/clone or /api/vms/create) and {verb} the clone.")
    return item


# Actions that make the VM named by their target: `tart clone` silently replaces an existing VM, so two of
# them for one name must never be queued at once.
MAKES_VM = ("localvm.clone", "localvm.create")


def _refuse_second_maker(target: str) -> None:
    """Inside the submitting transaction: 409 if a clone/create of target is pending or running. SQLite
    (the usual localvm database) takes its write lock at BEGIN (IMMEDIATE), which serializes this check
    with the insert; PostgreSQL gets a transaction-scoped advisory lock on the name."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"localvm.make:{target}"])
    busy = (Task.objects.filter(action__in=MAKES_VM, target=target,
                                status__in=(TaskStatus.PENDING, TaskStatus.RUNNING))
            .order_by("created_at").first())
    if busy is not None:
        raise Conflict(f"VM {target!r} is already being made by task {busy.id} ({busy.action}, {busy.status}).")


def _task_reply(action: str, target: str, params: dict) -> Response:
    with transaction.atomic():
        if action in MAKES_VM:
            _refuse_second_maker(target)
        task = submit(action, target=target, params=params)
    jobs.prune_tasks()
    return Response(TaskSerializer(task).data, status=status.HTTP_202_ACCEPTED)


class GitHubTokenView(LocalView):
    @extend_schema(responses=s.GitHubTokenStatusSerializer, summary="GitHub token status (masked)")
    def get(self, request):
        return Response(github.token_status())

    @extend_schema(request=s.GitHubTokenSerializer, responses=s.GitHubTokenStatusSerializer,
                   summary="Set the GitHub token (an empty string or null clears it)")
    def post(self, request):
        data = s.GitHubTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        github.set_token(data.validated_data["token"])
        return Response(github.token_status())


class TartVersionView(LocalView):
    @extend_schema(responses={200: s.VersionSerializer, **TART_ERRORS}, summary="Installed Tart version")
    def get(self, request):
        return Response({"version": tart.version()})


class AvailableImagesView(LocalView):
    @extend_schema(responses={200: s.VMImageSerializer(many=True), **errors(422, 502)},
                   summary="cirruslabs macOS images on GitHub (needs the GitHub token; ?force_refresh=true)")
    def get(self, request):
        return Response(github.list_images(force=_flag(request, "force_refresh")))


class CategorizedView(LocalView):
    @extend_schema(responses={200: s.VMImagesSummarySerializer, **TART_ERRORS},
                   summary="Base images (OCI) vs working VMs (local)")
    def get(self, request):
        vms = inventory.cached()
        return Response({
            "base_images": [vm for vm in vms if str(vm.get("source") or "").lower() == "oci"],
            "working_vms": [vm for vm in vms if str(vm.get("source") or "").lower() != "oci"],
        })


class VMListView(LocalView):
    @extend_schema(responses={200: s.VMSerializer(many=True), **TART_ERRORS},
                   summary="The cached VM inventory")
    def get(self, request):
        return Response(inventory.cached())


class RefreshView(LocalView):
    @extend_schema(request=None, responses={200: s.VMSerializer(many=True), **TART_ERRORS},
                   summary="Refresh from tart list + tart ip")
    def post(self, request):
        return Response(inventory.refresh())


class VMDetailView(LocalView):
    @extend_schema(parameters=[NAME], responses={200: s.VMSerializer, **TART_ERRORS},
                   summary="One VM from the cached inventory")
    def get(self, request, name):
        vm = inventory.find(_checked_name(name))
        if vm is None:
            raise NotFound(f"VM {name!r} does not exist.")
        return Response(vm)


class VMConfigView(LocalView):
    @extend_schema(parameters=[NAME], responses={200: s.VMConfigSerializer, **TART_ERRORS},
                   summary="tart get NAME, normalised (cached; ?force_refresh=true)")
    def get(self, request, name):
        return Response(inventory.config(_checked_name(name), force=_flag(request, "force_refresh")))


class StartView(LocalView):
    @extend_schema(parameters=[NAME], request=None,
                   responses={202: TaskSerializer, **errors(422), **TART_ERRORS},
                   summary="Start a VM (tart run, detached)")
    def post(self, request, name):
        _local_vm(name, "start")
        return _task_reply("localvm.start", name, {"name": name})


class StopView(LocalView):
    @extend_schema(parameters=[NAME], request=None,
                   responses={202: TaskSerializer, **errors(422), **TART_ERRORS},
                   summary="Stop a VM")
    def post(self, request, name):
        _local_vm(name, "stop")
        return _task_reply("localvm.stop", name, {"name": name})


class DeleteView(LocalView):
    @extend_schema(parameters=[NAME], request=None, responses={202: TaskSerializer, **TART_ERRORS},
                   summary="Delete a VM or a pulled image")
    def post(self, request, name):
        _existing(name)
        return _task_reply("localvm.delete", name, {"name": name})


class CloneView(LocalView):
    @extend_schema(parameters=[NAME], request=s.CloneSerializer,
                   responses={202: TaskSerializer, **errors(409), **TART_ERRORS},
                   summary="Clone a VM (optionally start the clone)")
    def post(self, request, name):
        data = s.CloneSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        listing = _listing()
        _existing(name, listing)
        new_name = data.validated_data["new_name"]
        if new_name in listing:
            raise Conflict(f"VM {new_name!r} already exists.")
        return _task_reply("localvm.clone", new_name, {"name": name, **data.validated_data})


class PullView(LocalView):
    @extend_schema(request=s.PullSerializer, responses={202: TaskSerializer}, summary="tart pull OCI_URL")
    def post(self, request):
        data = s.PullSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        oci_url = data.validated_data["oci_url"]
        return _task_reply("localvm.pull", oci_url, {"oci_url": oci_url})


class CreateView(LocalView):
    @extend_schema(request=s.CreateSerializer,
                   responses={202: TaskSerializer, **errors(404, 409), **TART_ERRORS},
                   summary="Clone a base image, then tart set cpu / memory (GB) / disk (GB)")
    def post(self, request):
        data = s.CreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        listing = _listing()
        if params["name"] in listing:
            raise Conflict(f"VM {params['name']!r} already exists.")
        source = params["source_vm"]
        if not v.is_oci_ref(source) and source not in listing:
            raise NotFound(f"Source VM {source!r} does not exist.")
        return _task_reply("localvm.create", params["name"], dict(params))
