"""Request validation (CreateEnvReq, VmSpec, host registration). Replies are built in fleet.queries."""

from rest_framework import serializers

from .. import conf
from ..choices import ENGINES, IMAGE_FREE_ENGINES
from ..validators import ADDR, env_id_error, validate_ssh_key


class VmSpecSerializer(serializers.Serializer):
    image = serializers.CharField(max_length=255)
    engine = serializers.ChoiceField(choices=ENGINES, default="qemu")
    cpu = serializers.IntegerField(min_value=1, max_value=conf.MAX_CPU, default=2)
    mem = serializers.IntegerField(min_value=1, max_value=conf.MAX_MEM, default=1024, help_text="MiB")
    disk = serializers.IntegerField(min_value=1, max_value=conf.MAX_DISK, default=40960, help_text="MiB")
    ports = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=65535), default=list,
                                  max_length=conf.MAX_PORTS_PER_VM)
    deny_outgoing = serializers.BooleanField(default=False)

    def validate_image(self, value):
        if any(c.isspace() or ord(c) < 32 for c in value):
            raise serializers.ValidationError("must not contain blanks or control characters")
        return value

    def validate(self, attrs):
        ports = set(attrs["ports"])
        if attrs["engine"] not in IMAGE_FREE_ENGINES:
            ports.add(22)  # VM engines always publish SSH
        if len(ports) > conf.MAX_PORTS_PER_VM:
            raise serializers.ValidationError({"ports": f"at most {conf.MAX_PORTS_PER_VM} ports per VM"})
        attrs["ports"] = sorted(ports)
        return attrs


class CreateEnvSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=128, trim_whitespace=False)
    owner = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    ssh_keys = serializers.ListField(child=serializers.CharField(trim_whitespace=False, max_length=16384),
                                     allow_empty=False, max_length=64)
    vms = serializers.ListField(child=VmSpecSerializer(), allow_empty=False, max_length=conf.MAX_VMS_PER_ENV)
    lifetime = serializers.IntegerField(min_value=0, max_value=conf.MAX_LIFETIME, required=False,
                                        allow_null=True, default=None,
                                        help_text="seconds; default 21600, 0 = never expires")

    def validate_id(self, value):
        if error := env_id_error(value):
            raise serializers.ValidationError(error)
        return value

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


class HostCreateSerializer(serializers.Serializer):
    addr = serializers.CharField(max_length=255)
    api_key = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    def validate_addr(self, value):
        value = value.strip().rstrip("/")
        if not ADDR.match(value):
            raise serializers.ValidationError("must be host:port (e.g. 10.0.0.2:9100)")
        port = int(value.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            raise serializers.ValidationError("port must be 1-65535")
        return value


class HostUpdateSerializer(serializers.Serializer):
    drain = serializers.BooleanField(required=False)
    api_key = serializers.CharField(max_length=255, required=False, allow_blank=True)
