"""One serializer per resource of the fleet API: it validates the requests, documents the schema and
writes the replies (from `.values()` rows: fleet.api.rows, read by fleet.queries). The pages show the
same resources through the same serializers.

With COMPONENT_SPLIT_REQUEST the schema shows a resource's writable fields as `<Name>Request`:
EnvironmentRequest is the contract's CreateEnvReq, VmRequest its VmSpec.
"""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from agent.api.serializers import (  # relayed from the agents
    SSH_USER,
    ImageSerializer,
    ResourcesSerializer,
    SshSerializer,
)
from ttproject.api.schema import error_responses
from ttproject.exposure import AUTH_HELP, AUTH_MODES
from ttproject.sshkeys import connect_host
from ttproject.vocabulary import (
    DEFAULT_DISK_MIB,
    DEFAULT_ENGINE,
    ENGINES,
    MAX_PORTS_PER_VM,
    MIN_MEM_MESSAGE,
    MIN_MEM_MIB,
    MIN_VM_MEM_MIB,
    VM_ENGINES,
    default_disk,
    too_little_disk,
    too_little_mem,
)

from .. import conf
from ..choices import IMAGE_FREE_ENGINES, EnvState, HostState, OnExpiry, VmState
from ..models import Environment, Host, Vm
from ..validators import ADDR, API_KEY, ENV_ID, HOSTNAME, IMAGE, validate_ssh_key
from .fields import NamedChoiceField
from .rows import RowSerializerMixin


class VmSshSerializer(RowSerializerMixin, SshSerializer):
    """Where the VM's SSH is and whether it answers (docs/readiness.md); null for a VM without port 22."""

    host = serializers.CharField(help_text="address to connect to: the published address, or the host's "
                                           "when the ports are published on all its addresses")
    ready = serializers.BooleanField(allow_null=True, help_text="its agent saw an SSH banner and host keys on the "
                                                                "port since the VM started; null: the agent "
                                                                "reports no readiness")

    @classmethod
    def row_fields(cls) -> tuple[str, ...]:
        return ("publish_addr", "host__addr", "port_map", "ssh_ready", "ssh_ready_at", "host_key_fingerprints")

    def to_representation(self, row: dict) -> dict | None:
        port = (row["port_map"] or {}).get("22")
        if not port:
            return None
        return {"host": connect_host(row["publish_addr"], row["host__addr"]), "port": int(port), "user": SSH_USER,
                "host_key_fingerprints": list(row["host_key_fingerprints"] or []), "ready": row["ssh_ready"],
                "ready_at": row["ssh_ready_at"]}


class VmSerializer(RowSerializerMixin, serializers.ModelSerializer):
    """A VM of an environment, as the controller knows it. Written in a create request: its spec."""

    env = serializers.CharField(source="env_id", read_only=True, help_text="the environment's id")
    host = serializers.IntegerField(source="host_id", read_only=True, allow_null=True,
                                    help_text="the host's id (null once the host is removed)")
    host_addr = serializers.CharField(source="host.addr", read_only=True, allow_null=True,
                                      help_text="the host's agent address (host:port)")
    image = serializers.CharField(max_length=255, validators=[IMAGE])
    engine = NamedChoiceField("Engine", ENGINES, default=DEFAULT_ENGINE)
    cpu = serializers.IntegerField(min_value=1, max_value=conf.MAX_CPU, default=2)
    mem = serializers.IntegerField(min_value=MIN_MEM_MIB, max_value=conf.MAX_MEM, default=1024,
                                   error_messages={"min_value": MIN_MEM_MESSAGE},
                                   help_text=f"MiB; at least {MIN_VM_MEM_MIB} for {', '.join(VM_ENGINES)}")
    disk = serializers.IntegerField(min_value=0, max_value=conf.MAX_DISK, required=False,
                                    help_text=f"MiB reserved; default {DEFAULT_DISK_MIB} for the VM engines, "
                                              "none for docker")
    ports = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=65535), default=list,
                                  max_length=MAX_PORTS_PER_VM,
                                  help_text="guest ports to publish (22 is added for VM engines)")
    deny_outgoing = serializers.BooleanField(default=False)
    hostname = serializers.CharField(read_only=True, max_length=63, validators=[HOSTNAME],
                                     help_text="the guest's hostname: an RFC 1123 label derived from its id")
    state = NamedChoiceField("VmState", VmState.choices, read_only=True)
    port_map = serializers.DictField(child=serializers.IntegerField(), read_only=True,
                                     help_text="guest port (as a string) -> published port on the host")
    ssh = VmSshSerializer(source="*", read_only=True, allow_null=True)

    class Meta:
        model = Vm
        fields = ["id", "env", "index", "host", "host_addr", "image", "engine", "cpu", "mem", "disk", "ports",
                  "deny_outgoing", "hostname", "state", "ip", "port_map", "publish_addr", "ssh", "error",
                  "created_at", "updated_at"]
        read_only_fields = ["id", "index", "ip", "publish_addr", "error", "created_at", "updated_at"]
        extra_kwargs = {"id": {"help_text": "<env id>-<index>"},
                        "index": {"help_text": "position in the environment's `vms` list"},
                        "ip": {"help_text": "the guest's private address on its host: on the env's network "
                                            "when it is isolated (docker, qemu), known once it is created"},
                        "publish_addr": {"help_text": "where the published ports are reached"}}

    def validate(self, attrs):
        refused = too_little_mem(attrs["engine"], attrs["mem"])  # what the agent would refuse
        if refused:
            raise serializers.ValidationError({"mem": [refused]})
        attrs.setdefault("disk", default_disk(attrs["engine"]))
        if refused := too_little_disk(attrs["engine"], attrs["disk"]):
            raise serializers.ValidationError({"disk": [refused]})
        ports = set(attrs["ports"])
        if attrs["engine"] not in IMAGE_FREE_ENGINES:
            ports.add(22)  # VM engines always publish SSH
        if len(ports) > MAX_PORTS_PER_VM:
            raise serializers.ValidationError({"ports": f"at most {MAX_PORTS_PER_VM} ports per VM"})
        attrs["ports"] = sorted(ports)
        return attrs


class EnvironmentSerializer(RowSerializerMixin, serializers.ModelSerializer):
    """An environment: a named group of VMs placed across hosts, with a lifetime. Written: the create
    request. A 202 reply's `task` is the task carrying the operation out: follow it at /api/tasks/{task}
    or /ws/tasks/{task}."""

    id = serializers.CharField(max_length=128, trim_whitespace=False, validators=[ENV_ID])
    owner = serializers.CharField(max_length=150, required=False, allow_blank=True, default="",
                                  help_text="an owner label (operators only: an owner's own requests get "
                                            "their username)")
    ssh_keys = serializers.ListField(child=serializers.CharField(trim_whitespace=False, max_length=16384),
                                     min_length=1, max_length=64,
                                     help_text="public keys injected into every VM (cloud-init)")
    vms = serializers.ListField(child=VmSerializer(), min_length=1, max_length=conf.MAX_VMS_PER_ENV)
    lifetime = serializers.IntegerField(min_value=0, max_value=conf.LIFETIME_BOUND, required=False,
                                        allow_null=True, default=None,
                                        help_text="seconds; default 21600, 0 = never expires. Owners: at most "
                                                  "TTSTACK_MAX_LIFETIME, 0 only with TTSTACK_OWNERS_NEVER_EXPIRE")
    on_expiry = NamedChoiceField("OnExpiry", OnExpiry.choices, default=OnExpiry.DELETE,
                                 help_text="at the deadline: delete, or stop (disks kept) and delete "
                                           "TTSTACK_STOPPED_GRACE later (`delete_at`)")
    isolated_network = serializers.BooleanField(
        default=True, help_text="true: the env's docker and qemu VMs on one host share a private network and "
                                "reach each other by hostname, apart from other envs and the host's services; "
                                "false: each VM alone on its engine's default network (docs/networks.md)")
    state = NamedChoiceField("EnvState", EnvState.choices, read_only=True)
    task = serializers.CharField(source="operation_id", read_only=True, allow_null=True,
                                 help_text="id of the task of the latest operation (create, stop, start, "
                                           "delete)")

    class Meta:
        model = Environment
        fields = ["id", "owner", "state", "error", "lifetime", "isolated_network", "on_expiry", "expires_at",
                  "delete_at", "created_at", "updated_at", "task", "ssh_keys", "vms"]
        read_only_fields = ["error", "expires_at", "delete_at", "created_at", "updated_at"]
        extra_kwargs = {"expires_at": {"help_text": "null when the environment never expires"},
                        "delete_at": {"help_text": "on_expiry stop: when the expired, stopped environment is "
                                                   "deleted"}}

    def validate_ssh_keys(self, keys):
        out, errors = [], {}
        for i, key in enumerate(keys):
            try:
                out.append(validate_ssh_key(key))
            except ValueError as exc:
                errors[i] = [str(exc)]
        if errors:
            raise serializers.ValidationError(errors)
        return out

    def validate_lifetime(self, value):
        return conf.DEFAULT_LIFETIME if value is None else value


class EnvironmentRowSerializer(EnvironmentSerializer):
    """An environment in the list (GET /api/envs): its VMs, no SSH keys."""

    class Meta(EnvironmentSerializer.Meta):
        fields = [f for f in EnvironmentSerializer.Meta.fields if f != "ssh_keys"]


class HostReservedSerializer(RowSerializerMixin, serializers.Serializer):
    """What the controller's live VMs on this host reserve (what placement counts)."""

    cpu = serializers.IntegerField(source="reserved_cpu")
    mem = serializers.IntegerField(source="reserved_mem", help_text="MiB")
    disk = serializers.IntegerField(source="reserved_disk", help_text="MiB")


class ForeignVmSerializer(serializers.Serializer):
    """A VM on the host's agent that this controller did not make: left alone, only reported."""

    id = serializers.CharField()
    controller = serializers.CharField(allow_blank=True,
                                       help_text="id of the controller that made it; empty: made on the agent directly")


class HostSerializer(RowSerializerMixin, serializers.ModelSerializer):
    """A registered agent. Written: its registration (`addr`, optional `api_key` and `drain`); a PATCH sets
    `drain` or `api_key`. The key is never shown."""

    addr = serializers.CharField(max_length=255, validators=[ADDR], help_text="host:port of the agent")
    api_key = serializers.CharField(max_length=255, write_only=True, required=False, allow_blank=True,
                                    validators=[API_KEY],
                                    help_text="the agent's own key (`ttstack agent --api-key` or the one it made "
                                              "and printed); the only key the controller sends it. Empty: "
                                              "an agent without a key")
    state = NamedChoiceField("HostState", HostState.choices, read_only=True)
    engines = serializers.ListField(child=serializers.CharField(), read_only=True,
                                    help_text="engines available on the host")
    engines_unavailable = serializers.DictField(child=serializers.CharField(), read_only=True,
                                                help_text="engine -> why it is not available")
    images = ImageSerializer(many=True, read_only=True,
                             help_text="as the host's agent reports them (agent GET /api/images)")
    resources = ResourcesSerializer(source="*", read_only=True, help_text="the agent's own figures, as last reported")
    reserved = HostReservedSerializer(source="*", read_only=True)
    vms = serializers.IntegerField(source="live_vms", read_only=True, help_text="the controller's live VMs on the host")
    foreign_vms = serializers.ListField(child=ForeignVmSerializer(), read_only=True,
                                        help_text="VMs on the agent made by another controller or on the agent "
                                                  "directly: never destroyed by this controller")

    class Meta:
        model = Host
        fields = ["id", "addr", "api_key", "host_id", "hostname", "version", "state", "drain", "engines",
                  "engines_unavailable", "storage", "images", "resources", "reserved", "vm_count", "vms",
                  "foreign_vms", "last_seen", "error", "created_at"]
        read_only_fields = ["host_id", "hostname", "version", "storage", "vm_count", "last_seen", "error",
                            "created_at"]
        extra_kwargs = {"drain": {"required": False, "help_text": "true: no new placements"},
                        "storage": {"help_text": "file or zvol"},
                        "vm_count": {"help_text": "VMs on the host as its agent reports"},
                        "error": {"help_text": "the last failure to reach the agent"}}

    def get_fields(self):
        fields = super().get_fields()
        if self.partial:  # PATCH: the address stays the one registered (remove and register to change it)
            fields["addr"].read_only = True
        return fields

    def validate_addr(self, value):
        value = value.rstrip("/")
        port = int(value.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            raise serializers.ValidationError("port must be 1-65535")
        return value


class FleetImageHostSerializer(RowSerializerMixin, serializers.Serializer):
    id = serializers.IntegerField(help_text="the host's id")
    addr = serializers.CharField()
    state = NamedChoiceField("HostState", HostState.choices)
    sha256 = serializers.CharField(allow_blank=True, help_text="as this host reports it (disk: of the file, when "
                                                               "known; docker: the image id)")


class FleetImageSerializer(RowSerializerMixin, serializers.Serializer):
    """An image some host has, with every host that has it (engines merged across hosts)."""

    name = serializers.CharField()
    kind = serializers.CharField(allow_blank=True, help_text="disk or docker")
    format = serializers.CharField(allow_blank=True)
    size = serializers.IntegerField(help_text="bytes (as the first host reporting it says)")
    description = serializers.CharField(allow_blank=True)
    engines = serializers.ListField(child=serializers.CharField())
    hosts = FleetImageHostSerializer(many=True)


class FleetStatusSerializer(RowSerializerMixin, serializers.Serializer):
    """Fleet-wide figures. *_used is what the controller's live VMs reserve; the agents' own figures are
    on each host's `resources`."""

    hosts = serializers.IntegerField()
    hosts_online = serializers.IntegerField()
    cpu_total = serializers.IntegerField()
    cpu_used = serializers.IntegerField()
    mem_total = serializers.IntegerField(help_text="MiB")
    mem_used = serializers.IntegerField(help_text="MiB")
    disk_total = serializers.IntegerField(help_text="MiB")
    disk_used = serializers.IntegerField(help_text="MiB")
    total_envs = serializers.IntegerField()
    total_vms = serializers.IntegerField(help_text="VMs not yet confirmed gone")
    envs_by_state = serializers.DictField(child=serializers.IntegerField(), help_text="state -> count")
    vms_by_state = serializers.DictField(child=serializers.IntegerField(), help_text="state -> count")
    controller_id = serializers.CharField(help_text="this controller's id, sent with every VM create; agents "
                                                    "label the guests with it (docs/security.md)")
    auth = serializers.ChoiceField(choices=AUTH_MODES, help_text=AUTH_HELP)
    warnings = serializers.ListField(child=serializers.CharField(),
                                     help_text="e.g. serving without a key, tasks that no job worker runs")


_ERROR_TEXT = {
    400: "invalid request (validation errors in `errors`)",
    401: "API key or owner token missing or wrong",
    403: "not allowed (hosts are managed by operators)",
    404: "not found (or not visible to this owner)",
    409: "conflicts with the current state",
    422: "well formed but cannot be carried out (no capacity, engine or image missing...)",
    502: "the VM's agent failed or did not answer",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Error responses for `extend_schema(responses=...)`, in the fleet's words; 401 is always included."""
    return error_responses(401, *codes, meanings=_ERROR_TEXT)
