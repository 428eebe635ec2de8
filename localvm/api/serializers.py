from rest_framework import serializers

from .. import validation as v


def check_new_name(value: str) -> str:
    if not v.is_vm_name(value):
        raise serializers.ValidationError(
            "A VM name is 1-128 characters of letters, digits, '.', '_' and '-', not starting with '.' or '-'.")
    if value in v.RESERVED_NAMES:
        raise serializers.ValidationError(f"'{value}' is reserved by the API; choose another name.")
    return value


def check_oci(value: str) -> str:
    if not v.is_oci_ref(value):
        raise serializers.ValidationError(
            "Not an OCI image reference like ghcr.io/cirruslabs/macos-sonoma-base:latest.")
    return value


class GitHubTokenSerializer(serializers.Serializer):
    token = serializers.CharField(allow_blank=True, allow_null=True, trim_whitespace=True, max_length=255,
                                  help_text='The token; "" or null clears it.')

    def validate_token(self, value):
        if value and any(ch.isspace() for ch in value):
            raise serializers.ValidationError("A GitHub token contains no whitespace.")
        return value


class GitHubTokenStatusSerializer(serializers.Serializer):
    configured = serializers.BooleanField()
    masked_token = serializers.CharField(allow_null=True)


class PullSerializer(serializers.Serializer):
    oci_url = serializers.CharField(max_length=512, validators=[check_oci])


class CloneSerializer(serializers.Serializer):
    new_name = serializers.CharField(max_length=128, validators=[check_new_name])
    start_after_clone = serializers.BooleanField(default=False)


class CreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128, validators=[check_new_name])
    source_vm = serializers.CharField(max_length=512, help_text="A local VM or an OCI image reference.")
    cpu = serializers.IntegerField(min_value=v.CPU_RANGE[0], max_value=v.CPU_RANGE[1], required=False,
                                   allow_null=True)
    memory = serializers.IntegerField(min_value=v.MEMORY_GB_RANGE[0], max_value=v.MEMORY_GB_RANGE[1],
                                      required=False, allow_null=True, help_text="GB")
    disk_size = serializers.IntegerField(min_value=v.DISK_GB_RANGE[0], max_value=v.DISK_GB_RANGE[1],
                                         required=False, allow_null=True, help_text="GB")

    def validate_source_vm(self, value):
        if not v.is_known_form(value):
            raise serializers.ValidationError("Not a VM name or an OCI image reference.")
        return value


class VMSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["running", "stopped", "unknown"])
    ip_address = serializers.CharField(allow_null=True)
    source = serializers.CharField(allow_null=True)
    os = serializers.CharField(allow_null=True)
    cpu = serializers.IntegerField(allow_null=True)
    memory = serializers.CharField(allow_null=True)
    disk_size = serializers.JSONField(allow_null=True)
    display = serializers.CharField(allow_null=True)


class VMConfigSerializer(serializers.Serializer):
    name = serializers.CharField()
    cpu = serializers.IntegerField(allow_null=True)
    memory = serializers.CharField(allow_null=True)
    disk_size = serializers.CharField(allow_null=True)
    raw = serializers.JSONField()


class VMImageSerializer(serializers.Serializer):
    name = serializers.CharField()
    url = serializers.CharField()
    description = serializers.CharField(allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())
    updated_at = serializers.CharField(allow_null=True)


class VMImagesSummarySerializer(serializers.Serializer):
    base_images = VMSerializer(many=True)
    working_vms = VMSerializer(many=True)


class VersionSerializer(serializers.Serializer):
    version = serializers.CharField()
