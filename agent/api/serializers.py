"""JSON of the agent API (fleet contract, seeds/000): create request, VM, image, host info."""

import re

from rest_framework import serializers

from agent import conf
from agent.cloudinit import validate_ssh_key
from agent.models import Vm

NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")  # [A-Za-z0-9._-]{1,128}, no leading dot
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$")


class CreateVmSerializer(serializers.Serializer):
    id = serializers.CharField(required=False, allow_blank=False, max_length=128)
    image = serializers.CharField(max_length=255)
    engine = serializers.ChoiceField(choices=list(conf.ENGINE_NAMES), default="qemu")
    cpu = serializers.IntegerField(default=2, min_value=1)
    mem = serializers.IntegerField(default=1024, min_value=1, help_text="MiB")
    disk = serializers.IntegerField(default=40960, min_value=1, help_text="MiB")
    ports = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=65535), default=list,
                                  max_length=conf.MAX_PORTS_PER_VM)
    deny_outgoing = serializers.BooleanField(default=False)
    ssh_keys = serializers.ListField(child=serializers.CharField(trim_whitespace=False), default=list,
                                     max_length=100)
    hostname = serializers.CharField(required=False, max_length=253)

    def validate_id(self, value):
        if not NAME_RE.match(value):
            raise serializers.ValidationError("must be 1-128 characters of [A-Za-z0-9._-], not starting with a dot")
        return value

    def validate_hostname(self, value):
        if not HOSTNAME_RE.match(value):
            raise serializers.ValidationError("must be 1-253 characters of [A-Za-z0-9._-], not starting with . or -")
        return value

    def validate_ssh_keys(self, value):
        keys = []
        for index, key in enumerate(value):
            try:
                keys.append(validate_ssh_key(key))
            except ValueError as exc:
                raise serializers.ValidationError(f"key {index}: {exc}") from exc
        return keys

    def to_internal_value(self, data):
        if isinstance(data, dict) and "engine" in data and data["engine"] not in conf.ENGINE_NAMES:
            raise serializers.ValidationError(
                {"engine": [f"unknown engine {str(data['engine'])[:40]!r}; expected one of "
                            f"{', '.join(conf.ENGINE_NAMES)}"]})
        return super().to_internal_value(data)


class VmSerializer(serializers.ModelSerializer):
    port_map = serializers.SerializerMethodField()
    ports = serializers.ListField(child=serializers.IntegerField())

    class Meta:
        model = Vm
        fields = ["id", "image", "engine", "cpu", "mem", "disk", "ports", "port_map", "publish_addr",
                  "deny_outgoing", "hostname", "state", "ip", "error", "created_at", "updated_at"]
        read_only_fields = fields

    def get_port_map(self, vm) -> dict[str, int]:
        return {str(g): int(h) for g, h in sorted((vm.port_map or {}).items(), key=lambda kv: int(kv[0]))}


class ImageSerializer(serializers.Serializer):
    name = serializers.CharField()
    engines = serializers.ListField(child=serializers.CharField())
    kind = serializers.ChoiceField(choices=["disk", "docker"])
    format = serializers.CharField()
    size = serializers.IntegerField(help_text="bytes")
    description = serializers.CharField(allow_blank=True)


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
