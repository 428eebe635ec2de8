"""Pages of the controller.

- `/` and `/dashboard.json`: the fleet dashboard, open like the contract's `GET /` (it shows no secrets:
  no keys, no SSH keys, no VM addresses). The page embeds the first snapshot and its script polls
  `/dashboard.json` (a constant number of queries, the API's rows and serializers) every 2 s.
- `/my/...`: an owner's own environments (session login). The pages render the first state on the
  server; their script calls the REST API with the session and follows tasks over /ws/tasks/{id}.
"""

from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from .. import queries, quotas
from ..api.serializers import (
    EnvironmentRowSerializer,
    EnvironmentSerializer,
    FleetImageSerializer,
    FleetStatusSerializer,
    HostSerializer,
)
from ..models import Environment
from .forms import EnvCreateForm

# What the dashboard shows of each host and image (no keys, no VM addresses).
HOST_FIELDS = ("id", "addr", "hostname", "version", "state", "drain", "engines", "engines_unavailable", "storage",
               "resources", "reserved", "vm_count", "vms", "last_seen", "error")
IMAGE_FIELDS = ("name", "kind", "format", "size", "engines")


def dashboard_data() -> dict:
    """Everything the dashboard shows, in 8 queries whatever the fleet's size: the API's serializers over
    the API's rows, cut to what the dashboard needs."""
    hosts = [{k: h[k] for k in HOST_FIELDS} | {"images": len(h["images"] or [])}
             for h in HostSerializer(queries.host_rows(), many=True).data]
    images = [{k: i[k] for k in IMAGE_FIELDS} | {"hosts": [h["addr"] for h in i["hosts"]]}
              for i in FleetImageSerializer(queries.fleet_images(), many=True).data]
    return {"now": timezone.now(), "status": FleetStatusSerializer(queries.fleet_status()).data, "hosts": hosts,
            "envs": queries.env_summaries(), "images": images}


def dashboard(request):
    return render(request, "fleet/dashboard.html", {"snapshot": dashboard_data()})


@never_cache
def dashboard_json(request):
    return JsonResponse(dashboard_data())


def _owner_envs(user):
    return Environment.objects.filter(owner=user.username)


@login_required
def my_envs(request):
    envs = EnvironmentRowSerializer(queries.env_rows(_owner_envs(request.user)), many=True).data
    return render(request, "fleet/my_envs.html", {"envs": envs, "now": timezone.now(),
                                                  "quota": quota_rows(request.user.username)})


QUOTA_LABELS = {"envs": "Environments", "vms": "VMs", "cpu": "vCPUs", "mem": "Memory (MiB)", "disk": "Disk (MiB)"}


def quota_rows(owner: str) -> list[dict]:
    """The owner's quota as the page's table: what, used, limit (None = no limit)."""
    summary = quotas.summary(owner)
    return [{"field": f, "label": label, **summary[f]} for f, label in QUOTA_LABELS.items()]


@login_required
def env_detail(request, env_id):
    row = queries.env_detail(env_id, _owner_envs(request.user))
    if row is None:
        raise Http404("no such environment")
    return render(request, "fleet/env_detail.html", {"env": EnvironmentSerializer(row).data, "now": timezone.now(),
                                                     "task": request.GET.get("task", "")})


@login_required
def env_new(request):
    images = {i["name"] for i in queries.fleet_images()}
    return render(request, "fleet/env_new.html", {"form": EnvCreateForm(images=images)})


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def api_token(request):
    """Create or rotate the owner's personal API token; the key is shown once, right after."""
    token = Token.objects.filter(user=request.user).first()
    if request.method == "POST":
        if token is not None:
            token.delete()
        token = Token.objects.create(user=request.user)
        request.session["new_token"] = token.key
        return redirect("my-token")
    new_key = request.session.pop("new_token", None)
    return render(request, "fleet/token.html", {"token": token, "new_key": new_key})
