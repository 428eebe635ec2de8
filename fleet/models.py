"""Hosts (agents), environments and their VMs. The Task model is the foundation's (ttproject.tasks)."""

from datetime import datetime

from django.db import models
from django.db.models import Case, F, IntegerField, Q, Sum, Value, When
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ttproject.vocabulary import ENGINES_WITH_NETWORKS

from .choices import EnvState, HostState, OnExpiry, VmState

# A VM holds its host's resources until its agent confirmed it is gone.
# Stopped VMs keep their disk (and only their disk) — unless their environment is starting: the start
# checked that they fit and took their cpu/mem back at once, before the agents run them.
LIVE = Q(gone=False)


class Host(models.Model):
    addr = models.CharField(max_length=255, unique=True, help_text="host:port of the agent")
    api_key = models.CharField(max_length=255, blank=True, default="",
                               help_text="Key for this agent (default: the controller's agent key)")
    host_id = models.CharField(max_length=255, blank=True, default="", help_text="as reported by the agent")
    hostname = models.CharField(max_length=255, blank=True, default="")
    version = models.CharField(max_length=64, blank=True, default="")
    state = models.CharField(max_length=16, choices=HostState.choices, default=HostState.ONLINE,
                             db_index=True)
    drain = models.BooleanField(default=False, help_text="Take no new placements")
    engines = models.JSONField(default=list, blank=True)
    engines_unavailable = models.JSONField(default=dict, blank=True)
    storage = models.CharField(max_length=16, blank=True, default="")
    images = models.JSONField(default=list, blank=True)
    cpu_total = models.IntegerField(default=0)
    mem_total = models.BigIntegerField(default=0)
    disk_total = models.BigIntegerField(default=0)
    cpu_used = models.IntegerField(default=0)
    mem_used = models.BigIntegerField(default=0)
    disk_used = models.BigIntegerField(default=0)
    vm_count = models.IntegerField(default=0)
    # VMs on the agent made by another controller or directly on the agent: left alone, only reported.
    foreign_vms = models.JSONField(default=list, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.addr

    def apply_info(self, info: dict):
        """Copy an agent's /api/info answer onto the row (not saved)."""
        res = info.get("resources") or {}
        self.host_id = str(info.get("host_id") or "")[:255]
        self.hostname = str(info.get("hostname") or "")[:255]
        self.version = str(info.get("version") or "")[:64]
        self.engines = list(info.get("engines") or [])
        self.engines_unavailable = dict(info.get("engines_unavailable") or {})
        self.storage = str(info.get("storage") or "")[:16]
        self.images = list(info.get("images") or [])
        for field in ("cpu_total", "mem_total", "disk_total", "cpu_used", "mem_used", "disk_used"):
            setattr(self, field, int(res.get(field) or 0))
        self.vm_count = int(info.get("vm_count") or 0)


def reserved_by_host(host_ids=None, exclude_env: str | None = None) -> dict[int, dict]:
    """{host pk: {"cpu","mem","disk","vms"}} reserved by the controller's own live VMs (one query),
    leaving out those of `exclude_env` when given."""
    running = ~Q(state=VmState.STOPPED) | Q(env__state=EnvState.STARTING)
    vms = Vm.objects.filter(LIVE)
    if host_ids is not None:
        vms = vms.filter(host_id__in=host_ids)
    if exclude_env is not None:
        vms = vms.exclude(env_id=exclude_env)
    rows = vms.values("host_id").annotate(
        cpu=Sum(Case(When(running, then=F("cpu")), default=Value(0), output_field=IntegerField())),
        mem=Sum(Case(When(running, then=F("mem")), default=Value(0), output_field=IntegerField())),
        disk=Sum("disk"),
        vms=models.Count("id"),
    )
    return {r["host_id"]: r for r in rows}


class Environment(models.Model):
    id = models.CharField(primary_key=True, max_length=128)
    owner = models.CharField(max_length=150, blank=True, default="", db_index=True)
    ssh_keys = models.JSONField(default=list)
    lifetime = models.PositiveIntegerField(default=0, help_text="seconds; 0 = never expires")
    isolated_network = models.BooleanField(
        default=True, help_text="the env's VMs on one host share a private network of their own (docs/networks.md)")
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    state = models.CharField(max_length=16, choices=EnvState.choices, default=EnvState.CREATING,
                             db_index=True)
    error = models.TextField(blank=True, default="")
    # The task of the latest operation (fleet.transitions): the environment is busy while it runs.
    operation = models.ForeignKey("tasks.Task", on_delete=models.SET_NULL, null=True, blank=True,
                                  related_name="+")
    # What the deadline does (fleet.deadlines): delete, or stop and keep the disks until `delete_at`.
    on_expiry = models.CharField(max_length=8, choices=OnExpiry.choices, default=OnExpiry.DELETE)
    expiry_warned = models.BooleanField(default=False, help_text="the warning event of this deadline was recorded")
    delete_at = models.DateTimeField(null=True, blank=True, db_index=True,
                                     help_text="on_expiry stop: the second deadline, set when the env expired")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]

    def __str__(self):
        return self.id

    def set_state(self, state: str, *, only_from=None, **fields) -> bool:
        """Conditional UPDATE: move to `state` only from one of `only_from` (a claim)."""
        rows = Environment.objects.filter(pk=self.pk)
        if only_from is not None:
            rows = rows.filter(state__in=list(only_from))
        done = rows.update(state=state, updated_at=timezone.now(), **fields)
        if done:
            from . import events

            if state != self.state:  # settle() re-applies the same state every heartbeat
                events.env_state(self, state, **({"error": fields["error"]} if fields.get("error") else {}))
            self.state = state
            for key, value in fields.items():
                setattr(self, key, value)
        return bool(done)


def derive_env_state(vm_states: list[str], current: str) -> str:
    """An environment's state from its VMs' states (operation states stand while the job runs)."""
    if not vm_states:
        return current
    if any(s == VmState.FAILED for s in vm_states):
        return EnvState.FAILED
    if any(s in (VmState.PENDING, VmState.CREATING) for s in vm_states):
        return EnvState.CREATING
    if any(s in (VmState.DELETING, VmState.DELETED) for s in vm_states):
        return EnvState.DELETING
    if all(s == VmState.STOPPED for s in vm_states):
        return EnvState.STOPPED
    return EnvState.ACTIVE


class Vm(models.Model):
    id = models.CharField(primary_key=True, max_length=140)
    env = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="vms")
    index = models.PositiveSmallIntegerField(default=0)
    # PROTECT: deleting a host that VM rows still point at raises instead of orphaning them. fleet.hosts.remove_host
    # (the only way the API and the admin delete hosts) refuses while VMs are live and unlinks the gone ones.
    host = models.ForeignKey(Host, on_delete=models.PROTECT, null=True, related_name="vms")
    image = models.CharField(max_length=255)
    engine = models.CharField(max_length=16)
    cpu = models.PositiveIntegerField()
    mem = models.PositiveIntegerField(help_text="MiB")
    disk = models.PositiveIntegerField(help_text="MiB")
    ports = models.JSONField(default=list)
    deny_outgoing = models.BooleanField(default=False)
    hostname = models.CharField(max_length=63, blank=True, default="")
    state = models.CharField(max_length=16, choices=VmState.choices, default=VmState.PENDING, db_index=True)
    ip = models.CharField(max_length=64, blank=True, default="")
    port_map = models.JSONField(default=dict, blank=True)
    publish_addr = models.CharField(max_length=255, blank=True, default="")
    error = models.TextField(blank=True, default="")
    # As the agent reports it (its `ssh`): a banner and host keys seen on the published port 22; null: the
    # agent reports no readiness (an older agent) or the VM has no port 22.
    ssh_ready = models.BooleanField(null=True, default=None)
    ssh_ready_at = models.DateTimeField(null=True, blank=True)
    host_key_fingerprints = models.JSONField(default=list, blank=True)
    # doomed: must be destroyed on its agent; gone: the agent confirmed it is not there (or never was).
    doomed = models.BooleanField(default=False, db_index=True)
    gone = models.BooleanField(default=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["env_id", "index"]

    def __str__(self):
        return self.id

    @classmethod
    def from_db(cls, db, field_names, values):
        vm = super().from_db(db, field_names, values)
        vm._recorded_state = vm.__dict__.get("state")
        return vm

    def write(self, **fields):
        """UPDATE these fields of the row (and updated_at) without reading it first; the instance follows.
        A new state is recorded as a `vm.state` event."""
        fields["updated_at"] = timezone.now()
        Vm.objects.filter(pk=self.pk).update(**fields)
        if "state" in fields and fields["state"] != getattr(self, "_recorded_state", None):
            from . import events

            events.vm_state(self, fields["state"], self.env.owner)
            self._recorded_state = fields["state"]
        for key, value in fields.items():
            setattr(self, key, value)

    def agent_request(self, ssh_keys: list[str], network: str = "") -> dict:
        """The agent's POST /api/vms body: with this controller's id (the agent labels the guest with it) and
        `network` (the env's id when it is isolated) for the engines that have environment networks."""
        from .identity import controller_id

        body = {"id": self.id, "controller": controller_id(), "image": self.image, "engine": self.engine,
                "cpu": self.cpu, "mem": self.mem,
                "disk": self.disk, "ports": list(self.ports), "deny_outgoing": self.deny_outgoing,
                "ssh_keys": list(ssh_keys), "hostname": self.hostname}
        if network and self.engine in ENGINES_WITH_NETWORKS:
            body["network"] = network
        return body

    def reported(self) -> dict:
        """The fields `apply_agent` sets besides state and error: what to write after it."""
        return {"ip": self.ip, "port_map": self.port_map, "publish_addr": self.publish_addr,
                "ssh_ready": self.ssh_ready, "ssh_ready_at": self.ssh_ready_at,
                "host_key_fingerprints": self.host_key_fingerprints}

    def apply_agent(self, data: dict):
        """Copy an agent's VM JSON onto the row (not saved)."""
        state = data.get("state")
        if state in (VmState.RUNNING, VmState.STOPPED, VmState.FAILED, VmState.CREATING):
            self.state = state
        self.ip = str(data.get("ip") or "")[:64]
        self.port_map = {str(k): int(v) for k, v in (data.get("port_map") or {}).items()}
        self.publish_addr = str(data.get("publish_addr") or "")[:255]
        ssh = data.get("ssh") if isinstance(data.get("ssh"), dict) else {}
        # None: the agent does not know (an older agent) or does not watch this port 22 (no sshd declared)
        self.ssh_ready = ssh.get("ready") if isinstance(ssh.get("ready"), bool) else None
        self.ssh_ready_at = _when(ssh.get("ready_at")) if self.ssh_ready else None
        prints = ssh.get("host_key_fingerprints")
        self.host_key_fingerprints = [str(p)[:100] for p in prints[:20]] if isinstance(prints, list) else []
        if state == VmState.FAILED:
            self.error = str(data.get("error") or "the agent reports the VM failed")


def _when(value) -> datetime | None:
    try:
        return parse_datetime(str(value or ""))
    except ValueError:
        return None


class ControllerIdentity(models.Model):
    """This controller's id, made once and kept in its database: every web and worker process of one
    deployment sends the same id to the agents with each create, and orphan collection destroys only
    guests labelled with it."""

    name = models.CharField(primary_key=True, max_length=32)
    value = models.CharField(max_length=64, unique=True)

    def __str__(self):
        return self.value


class Lease(models.Model):
    """A named lease, so exactly one fleet loop runs even when several are started."""

    name = models.CharField(primary_key=True, max_length=64)
    holder = models.CharField(max_length=255, blank=True, default="")
    until = models.DateTimeField(null=True, blank=True)


from .models_governance import Event, Quota  # noqa: E402,F401 - models of the app, defined apart
