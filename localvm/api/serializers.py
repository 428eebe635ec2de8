from django.core.validators import RegexValidator
from rest_framework import serializers

from .. import validation as v

new_vm_name = RegexValidator(v.VM_NAME_RE, "A VM name is 1-128 characters of letters, digits, '.', '_' and '-', "
                                          "not starting with '.' or '-'.")
oci_reference = RegexValidator(v.OCI_RE, "Not an OCI image reference like "
                                         "ghcr.io/cirruslabs/macos-sonoma-base:latest.")
known_form = RegexValidator(v.KNOWN_FORM_RE, "Not a VM name or an OCI image reference.")


def not_reserved(value: str) -> str:
    if value in v.RESERVED_NAMES:
        raise serializers.ValidationError(f"'{value}' is reserved by the API; choose another name.")
    return value


class GitHubTokenSerializer(serializers.Serializer):
    # It travels in an HTTP header: printable ASCII, no whitespace.
    token = serializers.CharField(allow_blank=True, allow_null=True, trim_whitespace=True, max_length=255,
                                  validators=[RegexValidator(r"\A[!-~]*\Z", "A GitHub token is printable ASCII "
                                                                              "without whitespace.")],
                                  help_text='The token; "" or null clears it.')


class GitHubTokenStatusSerializer(serializers.Serializer):
    configured = serializers.BooleanField()
    masked_token = serializers.CharField(allow_null=True)


class PullSerializer(serializers.Serializer):
    oci_url = serializers.CharField(max_length=v.MAX_OCI_LENGTH, validators=[oci_reference])


class CloneSerializer(serializers.Serializer):
    new_name = serializers.CharField(max_length=128, validators=[new_vm_name, not_reserved])
    start_after_clone = serializers.BooleanField(default=False)


class CreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128, validators=[new_vm_name, not_reserved])
    source_vm = serializers.CharField(max_length=v.MAX_OCI_LENGTH, validators=[known_form],
                                      help_text="A local VM or an OCI image reference.")
    cpu = serializers.IntegerField(min_value=v.CPU_RANGE[0], max_value=v.CPU_RANGE[1], required=False,
                                   allow_null=True)
    memory = serializers.IntegerField(min_value=v.MEMORY_GB_RANGE[0], max_value=v.MEMORY_GB_RANGE[1],
                                      required=False, allow_null=True, help_text="GB")
    disk_size = serializers.IntegerField(min_value=v.DISK_GB_RANGE[0], max_value=v.DISK_GB_RANGE[1],
                                         required=False, allow_null=True, help_text="GB")


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
