from django.contrib import admin

from .models import Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("id", "action", "target", "owner", "status", "created_at", "updated_at")
    list_filter = ("status", "action")
    search_fields = ("id", "target", "owner", "error")
    readonly_fields = [f.name for f in Task._meta.fields]
