"""Pages of the controller.

- `/` and `/dashboard.json`: the fleet dashboard, open like the contract's `GET /` (it shows no secrets:
  no keys, no SSH keys, no VM addresses). The page embeds the first snapshot and its script polls
  `/dashboard.json` (a constant number of queries, built from fleet.queries) every 2 s.
- `/my/...`: an owner's own environments (session login). The pages render the first state on the
  server; their script calls the REST API with the session and follows tasks over /ws/tasks/{id}.
"""

from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from .. import queries
from ..models import Environment
from .forms import EnvCreateForm

HOST_FIELDS = ("id", "addr", "hostname", "version", "state", "drain", "engines", "engines_unavailable", "storage",
               "resources", "reserved", "vm_count", "vms", "last_seen", "error")


def dashboard_data() -> dict:
    """Everything the dashboard shows, in 8 queries whatever the fleet's size."""
    envs = (Environment.objects.annotate(vm_count=Count("vms", filter=Q(vms__gone=False)))
            .values("id", "owner", "state", "vm_count", "expires_at", "created_at")
            .order_by("-created_at", "id"))
    hosts = [{k: h[k] for k in HOST_FIELDS} | {"images": len(h["images"] or [])} for h in queries.host_rows()]
    images = [{"name": i["name"], "kind": i["kind"], "format": i["format"], "size": i["size"],
               "engines": i["engines"], "hosts": [h["addr"] for h in i["hosts"]]} for i in queries.fleet_images()]
    return {"now": timezone.now(), "status": queries.fleet_status(), "hosts": hosts, "envs": list(envs),
            "images": images}


def dashboard(request):
    return render(request, "fleet/dashboard.html", {"snapshot": dashboard_data()})


@never_cache
def dashboard_json(request):
    return JsonResponse(dashboard_data())


def _owner_envs(user):
    return Environment.objects.filter(owner=user.username)


@login_required
def my_envs(request):
    envs = queries.env_rows(_owner_envs(request.user))
    return render(request, "fleet/my_envs.html", {"envs": envs, "now": timezone.now()})


@login_required
def env_detail(request, env_id):
    env = queries.env_detail(env_id, _owner_envs(request.user))
    if env is None:
        raise Http404("no such environment")
    return render(request, "fleet/env_detail.html", {"env": env, "now": timezone.now(),
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
