"""The operators' console: hosts, environments, VMs (tasks are registered by ttproject.tasks)."""

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.shortcuts import redirect

from ttproject.errors import DomainError

from . import deadlines, events, hosts, lifecycle
from .models import Environment, Host, Vm


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ("id", "addr", "hostname", "state", "drain", "live_vms", "cpu_total", "mem_total",
                    "disk_total", "last_seen", "error")
    list_filter = ("state", "drain")
    search_fields = ("addr", "hostname", "host_id")
    readonly_fields = ("host_id", "hostname", "version", "engines", "engines_unavailable", "storage", "images",
                       "cpu_total", "mem_total", "disk_total", "cpu_used", "mem_used", "disk_used", "vm_count",
                       "last_seen", "error", "created_at")
    actions = ["drain", "undrain", "detach"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_live=Count("vms", filter=Q(vms__gone=False)))

    @admin.display(description="live VMs", ordering="_live")
    def live_vms(self, obj):
        return obj._live

    def get_deleted_objects(self, objs, request):
        # fleet.hosts.remove_host decides (refuses live VMs, unlinks the gone ones): the rows that PROTECT
        # Vm.host keep must not block the confirmation.
        deleted, counts, perms_needed, _protected = super().get_deleted_objects(objs, request)
        return deleted, counts, perms_needed, []

    def delete_view(self, request, object_id, extra_context=None):
        # A host with live VMs is not deleted (fleet.hosts.remove_host refuses it): the confirmation is
        # answered with the reason instead of Django's "deleted successfully".
        host = self.get_object(request, object_id)
        if request.method == "POST" and host is not None:
            try:
                hosts.remove_host(host.pk)
            except DomainError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
                return redirect("admin:fleet_host_change", host.pk)
            self.message_user(request, f"host {host.addr} deleted")
            return redirect("admin:fleet_host_changelist")
        return super().delete_view(request, object_id, extra_context)

    def delete_queryset(self, request, queryset):
        for host in queryset:
            try:
                hosts.remove_host(host.pk)
            except DomainError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)

    @admin.action(description="Drain: take no new placements")
    def drain(self, request, queryset):
        self.message_user(request, f"{_set_drain(queryset, True)} host(s) draining")

    @admin.action(description="Undrain: accept placements again")
    def undrain(self, request, queryset):
        self.message_user(request, f"{_set_drain(queryset, False)} host(s) accepting placements")

    @admin.action(description="Detach (gone for good): its VMs are lost, its envs finish deleting or fail")
    def detach(self, request, queryset):
        for host in queryset:
            hosts.detach_host(host.pk)
            events.record("host.detach", f"host/{host.pk}", actor=events.OPERATOR, outcome="admin")
        self.message_user(request, f"{len(queryset)} host(s) detached")


def _set_drain(queryset, drain: bool) -> int:
    """Set `drain` on the hosts, each recorded as the API's PATCH would be (outcome `admin`: no HTTP here)."""
    ids = list(queryset.values_list("pk", flat=True))
    changed = Host.objects.filter(pk__in=ids).update(drain=drain)
    for host_id in ids:
        events.record("host.update", f"host/{host_id}", actor=events.OPERATOR, outcome="admin",
                      detail={"drain": drain})
    return changed


class VmInline(admin.TabularInline):
    model = Vm
    extra = 0
    can_delete = False
    fields = ("id", "host", "engine", "image", "cpu", "mem", "disk", "state", "port_map", "ip", "error",
              "doomed", "gone")
    readonly_fields = fields
    show_change_link = True


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "state", "vm_count", "expires_at", "created_at", "error")
    list_filter = ("state",)
    search_fields = ("id", "owner")
    readonly_fields = ("state", "operation", "error", "created_at", "updated_at")
    inlines = [VmInline]
    actions = ["extend_1h", "extend_6h", "destroy", "retry_delete"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_vms=Count("vms"))

    @admin.display(description="VMs", ordering="_vms")
    def vm_count(self, obj):
        return obj._vms

    # Deleting an environment here is the API's delete: its job destroys the guests on their agents and
    # drops the rows once every agent confirmed (rows dropped at once would leave the guests running).
    def delete_model(self, request, obj):
        lifecycle.request_delete(obj, "deleted by an operator in the admin")

    def delete_queryset(self, request, queryset):
        for env in queryset:
            lifecycle.request_delete(env, "deleted by an operator in the admin")

    def _extend(self, request, queryset, hours):
        n = deadlines.extend_lifetime(queryset, hours)
        self.message_user(request, f"{n} environment(s) extended by {hours} h")

    @admin.action(description="Extend lifetime by 1 hour")
    def extend_1h(self, request, queryset):
        self._extend(request, queryset, 1)

    @admin.action(description="Extend lifetime by 6 hours")
    def extend_6h(self, request, queryset):
        self._extend(request, queryset, 6)

    @admin.action(description="Destroy environment(s)")
    def destroy(self, request, queryset):
        tasks = [t for env in queryset if (t := lifecycle.delete_env(env, "destroyed by an operator"))]
        self.message_user(request, f"{len(tasks)} delete task(s) submitted")

    @admin.action(description="Retry a failed delete")
    def retry_delete(self, request, queryset):
        n = sum(1 for env in queryset if lifecycle.retry_delete(env))
        level = messages.SUCCESS if n else messages.WARNING
        self.message_user(request, f"{n} delete task(s) submitted", level=level)


@admin.register(Vm)
class VmAdmin(admin.ModelAdmin):
    list_display = ("id", "env", "host", "engine", "image", "state", "cpu", "mem", "disk", "doomed", "gone")
    list_filter = ("state", "engine", "doomed", "gone")
    search_fields = ("id", "env__id", "host__addr")
    list_select_related = ("env", "host")
    readonly_fields = [f.name for f in Vm._meta.fields]


from . import admin_governance  # noqa: E402,F401 - quotas and events, registered apart
