"""Models of owners' governance: quotas (fleet.quotas) and the event record (fleet.events)."""

from django.db import models
from django.utils import timezone

# The owner name of the quota row that is the default for every owner without a row of her own.
DEFAULT_QUOTA_OWNER = "*"
QUOTA_FIELDS = ("envs", "vms", "cpu", "mem", "disk")


class Quota(models.Model):
    """Most an owner may hold at once; null = no limit from this row (the default row's, if any)."""

    owner = models.CharField(max_length=150, unique=True, help_text=f"an owner's username, or {DEFAULT_QUOTA_OWNER!r}: "
                                                                    "the default for everyone")
    envs = models.PositiveIntegerField(null=True, blank=True, help_text="environments")
    vms = models.PositiveIntegerField(null=True, blank=True, help_text="VMs")
    cpu = models.PositiveIntegerField(null=True, blank=True, help_text="vCPUs")
    mem = models.PositiveBigIntegerField(null=True, blank=True, help_text="memory, MiB")
    disk = models.PositiveBigIntegerField(null=True, blank=True, help_text="disk, MiB")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["owner"]

    def __str__(self):
        return f"quota of {self.owner}"


class Event(models.Model):
    """Something that happened: an API mutation (with its outcome) or a state change."""

    id = models.BigAutoField(primary_key=True)
    time = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=150, help_text="`operator`, an owner's username, or `system`")
    action = models.CharField(max_length=64, db_index=True, help_text="e.g. env.create, env.state, vm.state")
    target = models.CharField(max_length=200, db_index=True, help_text="env/ID, vm/ID, host/ID, quota/OWNER")
    owner = models.CharField(max_length=150, blank=True, default="", db_index=True,
                             help_text="the owner of the environment concerned (owners see only theirs)")
    outcome = models.CharField(max_length=255, blank=True, default="",
                               help_text="HTTP status of a request, or the new state")
    detail = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target} {self.outcome}"
