from django.contrib import admin

from .models import PortAllocation, Vm


class PortInline(admin.TabularInline):
    model = PortAllocation
    extra = 0


@admin.register(Vm)
class VmAdmin(admin.ModelAdmin):
    list_display = ("id", "engine", "image", "state", "cpu", "mem", "disk", "ip", "created_at")
    list_filter = ("engine", "state")
    search_fields = ("id", "image", "hostname")
    inlines = [PortInline]


@admin.register(PortAllocation)
class PortAllocationAdmin(admin.ModelAdmin):
    list_display = ("host_port", "guest_port", "vm")
    search_fields = ("vm__id",)
