from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import Task


@extend_schema_field({"type": "number", "format": "float", "description": "unix timestamp"})
class UnixTimeField(serializers.Field):
    def to_representation(self, value):
        return value.timestamp() if value else None


@extend_schema_field({"type": "array", "items": {"type": "string"}})
class LogLinesField(serializers.Field):
    def to_representation(self, value):
        return value.splitlines()


class TaskSerializer(serializers.ModelSerializer):
    """The localvm contract's Task (id, action, status, command, exit_code, result, error, stderr,
    created_at, updated_at as unix floats, logs as a list of lines), plus target and owner."""

    created_at = UnixTimeField(read_only=True)
    updated_at = UnixTimeField(read_only=True)
    logs = LogLinesField(read_only=True)
    command = serializers.JSONField(read_only=True, allow_null=True)
    result = serializers.JSONField(read_only=True, allow_null=True)

    class Meta:
        model = Task
        fields = ["id", "action", "status", "target", "owner", "command", "exit_code", "result", "error",
                  "stderr", "created_at", "updated_at", "logs"]
        read_only_fields = fields


def task_payload(task: Task) -> dict:
    return TaskSerializer(task).data
