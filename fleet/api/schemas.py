"""Documentation-only serializers: the shapes of the fleet API's replies, for the OpenAPI schema.

The replies themselves are plain dicts built in fleet.queries (and fleet.api.views); these classes are
used only in `@extend_schema(responses=...)` and never serialize anything. Keep them in step with
fleet.queries: tests/fleet/test_schema.py compares a real reply with the schema.
"""

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from agent.api.serializers import ImageSerializer, ResourcesSerializer  # relayed from the agents

from ..choices import ENGINES, EnvState, HostState, VmState


class StateField(serializers.ChoiceField):
    """A choice field documented as one named enum component (EnvState, VmState, HostState), so the same
    set of states is one schema wherever it appears."""

    def __init__(self, enum_name: str, choices, **kwargs):
        self.enum_name = enum_name
        super().__init__(choices=choices, **kwargs)


class StateFieldExtension(OpenApiSerializerFieldExtension):
    target_class = StateField

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        component = ResolvedComponent(
            name=field.enum_name, type=ResolvedComponent.SCHEMA, object=field.enum_name,
            schema={"type": "string", "enum": list(field.choices)})
        auto_schema.registry.register_on_missing(component)
        return component.ref


def _engine():
    return serializers.CharField(help_text=f"one of {', '.join(ENGINES)}")


class ErrorSerializer(serializers.Serializer):
    """Every error reply."""

    detail = serializers.CharField(help_text="what went wrong, in one line")
    errors = serializers.DictField(required=False, help_text="validation errors as DRF reports them "
                                                             "(field -> messages); only on 400 replies")


class VmSerializer(serializers.Serializer):
    """A VM of an environment, as the controller knows it."""

    id = serializers.CharField(help_text="<env id>-<index>")
    env = serializers.CharField(help_text="the environment's id")
    index = serializers.IntegerField(help_text="position in the environment's `vms` list")
    host = serializers.IntegerField(allow_null=True, help_text="the host's id (null once the host is removed)")
    host_addr = serializers.CharField(allow_null=True, help_text="the host's agent address (host:port)")
    image = serializers.CharField()
    engine = _engine()
    cpu = serializers.IntegerField()
    mem = serializers.IntegerField(help_text="MiB")
    disk = serializers.IntegerField(help_text="MiB")
    ports = serializers.ListField(child=serializers.IntegerField(), help_text="guest ports published (22 included "
                                                                               "for VM engines)")
    deny_outgoing = serializers.BooleanField()
    hostname = serializers.CharField(allow_blank=True)
    state = StateField("VmState", VmState.choices)
    ip = serializers.CharField(allow_blank=True, help_text="the guest's address on its host")
    port_map = serializers.DictField(child=serializers.IntegerField(),
                                     help_text="guest port (as a string) -> published port on the host")
    publish_addr = serializers.CharField(allow_blank=True, help_text="where the published ports are reached")
    error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class EnvironmentRowSerializer(serializers.Serializer):
    """An environment in the list (GET /api/envs): its VMs, no SSH keys."""

    id = serializers.CharField()
    owner = serializers.CharField(allow_blank=True)
    state = StateField("EnvState", EnvState.choices)
    error = serializers.CharField(allow_blank=True)
    lifetime = serializers.IntegerField(help_text="seconds; 0 = never expires")
    expires_at = serializers.DateTimeField(allow_null=True, help_text="null when the environment never expires")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    vms = VmSerializer(many=True)


class EnvironmentSerializer(EnvironmentRowSerializer):
    """One environment (GET /api/envs/{id}): the list's fields plus its SSH keys."""

    ssh_keys = serializers.ListField(child=serializers.CharField())


class EnvironmentTaskSerializer(EnvironmentSerializer):
    """An environment and the task now working on it (202 replies). Follow the task at
    /api/tasks/{task} or /ws/tasks/{task}."""

    task = serializers.CharField(help_text="id of the task carrying the operation out")


class HostReservedSerializer(serializers.Serializer):
    """What the controller's live VMs on this host reserve (what placement counts)."""

    cpu = serializers.IntegerField()
    mem = serializers.IntegerField(help_text="MiB")
    disk = serializers.IntegerField(help_text="MiB")


class HostSerializer(serializers.Serializer):
    """A registered agent. The operators' key for it is never shown."""

    id = serializers.IntegerField()
    addr = serializers.CharField(help_text="host:port of the agent")
    host_id = serializers.CharField(allow_blank=True, help_text="as reported by the agent")
    hostname = serializers.CharField(allow_blank=True)
    version = serializers.CharField(allow_blank=True)
    state = StateField("HostState", HostState.choices)
    drain = serializers.BooleanField(help_text="true: no new placements")
    engines = serializers.ListField(child=serializers.CharField(), help_text="engines available on the host")
    engines_unavailable = serializers.DictField(child=serializers.CharField(),
                                                help_text="engine -> why it is not available")
    storage = serializers.CharField(allow_blank=True, help_text="file or zvol")
    images = ImageSerializer(many=True, help_text="as the host's agent reports them (agent GET /api/images)")
    resources = ResourcesSerializer(help_text="the agent's own figures, as last reported")
    reserved = HostReservedSerializer()
    vm_count = serializers.IntegerField(help_text="VMs on the host as its agent reports")
    vms = serializers.IntegerField(help_text="the controller's live VMs on the host")
    last_seen = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_blank=True, help_text="the last failure to reach the agent")
    created_at = serializers.DateTimeField()


class FleetImageHostSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="the host's id")
    addr = serializers.CharField()
    state = serializers.CharField(help_text="the host's state (HostState)")


class FleetImageSerializer(serializers.Serializer):
    """An image some host has, with every host that has it (engines merged across hosts)."""

    name = serializers.CharField()
    kind = serializers.CharField(allow_blank=True, help_text="disk or docker")
    format = serializers.CharField(allow_blank=True)
    size = serializers.IntegerField(help_text="bytes (as the first host reporting it says)")
    description = serializers.CharField(allow_blank=True)
    engines = serializers.ListField(child=serializers.CharField())
    hosts = FleetImageHostSerializer(many=True)


class FleetStatusSerializer(serializers.Serializer):
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


_ERROR_TEXT = {
    400: "invalid request (validation errors in `errors`)",
    401: "API key or owner token missing or wrong",
    403: "not allowed (hosts are managed by operators)",
    404: "not found (or not visible to this owner)",
    409: "conflicts with the current state",
    422: "well formed but cannot be carried out (no capacity, engine or image missing...)",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Error responses for `extend_schema(responses=...)`; 401 is always included."""
    return {code: OpenApiResponse(ErrorSerializer, description=_ERROR_TEXT[code])
            for code in sorted({401, *codes})}
