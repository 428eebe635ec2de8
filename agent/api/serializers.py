"""JSON of the agent API (fleet contract, seeds/000): create request, VM, image, host info, errors.

Input limits (docs/agent.md): ids are TTstack names (1-128 of [A-Za-z0-9._-], no leading dot), hostnames
one RFC 1123 label; cpu >= 1, disk >= 1 MiB, mem >= MIN_MEM_MIB (MIN_VM_MEM_MIB for the VM engines, which
boot a kernel; both in ttproject.vocabulary, which the controller checks too).
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agent.cloudinit import validate_ssh_key
from agent.models import Vm
from ttproject.exposure import AUTH_HELP, AUTH_MODES
from ttproject.vocabulary import (
    DEFAULT_DISK_MIB,
    ENGINES,
    HOSTNAME_PATTERN,
    MAX_PORTS_PER_VM,
    MIN_MEM_MESSAGE,
    MIN_MEM_MIB,
    MIN_VM_MEM_MIB,
    NAME_PATTERN,
    VM_ENGINES,
    default_disk,
    too_little_disk,
    too_little_mem,
)

MAX_INT = 2**31 - 1  # what the database's integer columns hold
SSH_USER = "root"  # the env's keys log in as root on every engine (and as the image's default user)
DEFAULT_CONSOLE_LINES, MAX_CONSOLE_LINES = 100, 5000


class CreateVmSerializer(serializers.Serializer):
    id = serializers.RegexField(
        rf"\A{NAME_PATTERN}\Z", required=False, max_length=128, trim_whitespace=False,
        error_messages={"invalid": "must be 1-128 characters of [A-Za-z0-9._-], not starting with a dot"},
        help_text="default: vm-<12 hex digits>")
    image = serializers.CharField(max_length=255, trim_whitespace=False,
                                  help_text="a disk image name, or a docker reference for the docker engine")
    engine = serializers.ChoiceField(choices=list(ENGINES), default="qemu")
    cpu = serializers.IntegerField(default=2, min_value=1, max_value=MAX_INT)
    mem = serializers.IntegerField(
        default=1024, min_value=MIN_MEM_MIB, max_value=MAX_INT,
        error_messages={"min_value": MIN_MEM_MESSAGE},
        help_text=f"MiB; at least {MIN_VM_MEM_MIB} for {', '.join(VM_ENGINES)}")
    disk = serializers.IntegerField(required=False, min_value=0, max_value=MAX_INT,
                                    help_text=f"MiB reserved; default {DEFAULT_DISK_MIB} for the VM engines, "
                                              "none for docker (a container's writes are not capped)")
    ports = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=65535), default=list,
                                  max_length=MAX_PORTS_PER_VM,
                                  help_text=f"guest ports; 22 is added for {', '.join(VM_ENGINES)}")
    deny_outgoing = serializers.BooleanField(default=False)
    ssh_keys = serializers.ListField(child=serializers.CharField(trim_whitespace=False, max_length=16384),
                                     default=list, max_length=100, help_text="OpenSSH public key lines")
    hostname = serializers.RegexField(
        rf"\A{HOSTNAME_PATTERN}\Z", required=False, max_length=63, trim_whitespace=False,
        error_messages={"invalid": "must be one RFC 1123 label: 1-63 letters, digits and '-', not starting "
                                   "or ending with '-'"},
        help_text="default: the id")
    controller = serializers.RegexField(
        rf"\A{NAME_PATTERN}\Z", required=False, max_length=64, trim_whitespace=False,
        error_messages={"invalid": "must be 1-64 characters of [A-Za-z0-9._-], not starting with a dot"},
        help_text="id of the controller asking; kept with the VM and on the guest's labels, so each controller "
                  "collects only its own orphans (default: none, a VM made directly on the agent)")
    network = serializers.RegexField(
        rf"\A{NAME_PATTERN}\Z", required=False, max_length=128, trim_whitespace=False,
        error_messages={"invalid": "must be 1-128 characters of [A-Za-z0-9._-], not starting with a dot"},
        help_text="environment network (docs/networks.md): the VMs with the same network on this host share a "
                  "private network and reach each other by hostname; omitted: no private network")

    def validate_ssh_keys(self, value):
        keys = []
        for index, key in enumerate(value):
            try:
                keys.append(validate_ssh_key(key))
            except ValueError as exc:
                raise serializers.ValidationError(f"key {index}: {exc}") from exc
        return keys

    def validate(self, attrs):
        refused = too_little_mem(attrs["engine"], attrs["mem"])
        if refused:
            raise serializers.ValidationError({"mem": [refused]})
        attrs.setdefault("disk", default_disk(attrs["engine"]))
        if refused := too_little_disk(attrs["engine"], attrs["disk"]):
            raise serializers.ValidationError({"disk": [refused]})
        return attrs

    def to_internal_value(self, data):
        if isinstance(data, dict) and "engine" in data and data["engine"] not in ENGINES:
            raise serializers.ValidationError(
                {"engine": [f"unknown engine {str(data['engine'])[:40]!r}; expected one of {', '.join(ENGINES)}"]})
        return super().to_internal_value(data)


class SshSerializer(serializers.Serializer):
    """Where a VM's SSH is and whether it answers (agent/ssh_ready.py); null for a VM without guest port 22."""

    host = serializers.CharField(help_text="address the port is published on (0.0.0.0: any of the host's)")
    port = serializers.IntegerField(help_text="published host port of guest port 22")
    user = serializers.CharField(help_text="user the env's keys log in as")
    host_key_fingerprints = serializers.ListField(child=serializers.CharField(),
                                                  help_text="SHA256 fingerprints of the guest's host keys, as "
                                                            "`ssh-keygen -l` prints them")
    ready = serializers.BooleanField(allow_null=True,
                                     help_text="the port sent an SSH banner and host keys since the VM started; "
                                               "null: not watched (port 22 asked for on a docker image that "
                                               "declares no sshd)")
    ready_at = serializers.DateTimeField(allow_null=True)


def ssh_of(vm) -> dict | None:
    port = (vm.port_map or {}).get("22")
    if not port:
        return None
    return {"host": vm.publish_addr, "port": int(port), "user": SSH_USER,
            "host_key_fingerprints": list(vm.host_key_fingerprints or []), "ready": vm.ssh_ready,
            "ready_at": serializers.DateTimeField().to_representation(vm.ssh_ready_at) if vm.ssh_ready_at else None}


class VmSerializer(serializers.ModelSerializer):
    port_map = serializers.SerializerMethodField()
    ports = serializers.ListField(child=serializers.IntegerField())
    ssh = serializers.SerializerMethodField()

    class Meta:
        model = Vm
        fields = ["id", "image", "engine", "cpu", "mem", "disk", "ports", "port_map", "publish_addr",
                  "deny_outgoing", "hostname", "controller", "network", "state", "ip", "error", "ssh", "created_at",
                  "updated_at"]
        read_only_fields = fields

    def get_port_map(self, vm) -> dict[str, int]:
        return {str(g): int(h) for g, h in sorted((vm.port_map or {}).items(), key=lambda kv: int(kv[0]))}

    @extend_schema_field(SshSerializer(allow_null=True))
    def get_ssh(self, vm) -> dict | None:
        return ssh_of(vm)


class ConsoleSerializer(serializers.Serializer):
    """The tail of a VM's console: the serial console's log (VM engines) or the container's output (docker)."""

    id = serializers.CharField()
    source = serializers.CharField(help_text="console.log or docker logs")
    lines = serializers.IntegerField(help_text="at most this many lines, the last ones")
    text = serializers.CharField(allow_blank=True)


class ConsoleQuerySerializer(serializers.Serializer):
    lines = serializers.IntegerField(min_value=1, max_value=MAX_CONSOLE_LINES, default=DEFAULT_CONSOLE_LINES)


class ImageSerializer(serializers.Serializer):
    name = serializers.CharField()
    engines = serializers.ListField(child=serializers.CharField())
    kind = serializers.ChoiceField(choices=["disk", "docker"])
    format = serializers.CharField()
    size = serializers.IntegerField(help_text="bytes")
    description = serializers.CharField(allow_blank=True)
    sha256 = serializers.CharField(allow_blank=True, default="", help_text=(
        "disk: sha256 of the disk file when known (an import checked it, or the build recorded it); "
        "docker: the image id"))


class ResourcesSerializer(serializers.Serializer):
    cpu_total = serializers.IntegerField()
    mem_total = serializers.IntegerField(help_text="MiB")
    disk_total = serializers.IntegerField(help_text="MiB")
    cpu_used = serializers.IntegerField()
    mem_used = serializers.IntegerField(help_text="MiB")
    disk_used = serializers.IntegerField(help_text="MiB")


class InfoSerializer(serializers.Serializer):
    host_id = serializers.CharField()
    hostname = serializers.CharField()
    version = serializers.CharField()
    engines = serializers.ListField(child=serializers.CharField())
    engines_unavailable = serializers.DictField(child=serializers.CharField())
    storage = serializers.ChoiceField(choices=["file", "zvol"])
    resources = ResourcesSerializer()
    images = ImageSerializer(many=True)
    vm_count = serializers.IntegerField()
    auth = serializers.ChoiceField(choices=AUTH_MODES, help_text=AUTH_HELP)
    warnings = serializers.ListField(child=serializers.CharField(), help_text="e.g. serving without a key")


class CreateFailedSerializer(serializers.Serializer):
    """A create whose guest did not come up: the record is kept in state failed (DELETE it to retry)."""

    detail = serializers.CharField()
    vm = VmSerializer()
