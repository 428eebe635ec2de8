"""The operators' console for governance: quotas (editable) and the event record (read only)."""

from django.contrib import admin

from .models_governance import Event, Quota


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ("owner", "envs", "vms", "cpu", "mem", "disk", "updated_at")
    search_fields = ("owner",)


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("id", "time", "actor", "action", "target", "owner", "outcome", "request_id")
    list_filter = ("action", "actor")
    search_fields = ("target", "owner", "actor", "request_id")
    date_hierarchy = "time"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a record: read, never edited (the retention prunes it)
