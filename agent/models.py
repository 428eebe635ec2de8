"""The agent's records: every VM it was asked for, written before any side effect, and its host ports."""

from django.db import models


class VmState(models.TextChoices):
    CREATING = "creating"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    DELETING = "deleting"


class Vm(models.Model):
    id = models.CharField(primary_key=True, max_length=128)
    image = models.CharField(max_length=255)
    engine = models.CharField(max_length=32)
    cpu = models.PositiveIntegerField()
    mem = models.PositiveIntegerField(help_text="MiB")
    disk = models.PositiveIntegerField(help_text="MiB")
    ports = models.JSONField(default=list, help_text="guest ports, 22 included for VM engines")
    port_map = models.JSONField(default=dict, help_text='{"guest port": host port}')
    publish_addr = models.CharField(max_length=64, default="0.0.0.0")
    deny_outgoing = models.BooleanField(default=False)
    hostname = models.CharField(max_length=253)
    ssh_keys = models.JSONField(default=list)
    controller = models.CharField(max_length=64, blank=True, default="",
                                  help_text="id of the controller that asked for the VM (empty: made directly)")
    network = models.CharField(max_length=128, blank=True, default="",
                               help_text="environment network shared with the env's other VMs on this host")
    state = models.CharField(max_length=16, choices=VmState.choices, default=VmState.CREATING)
    ip = models.CharField(max_length=64, blank=True, default="")
    error = models.TextField(blank=True, default="")
    guest_name = models.CharField(max_length=200, help_text="engine object name (container/domain)")
    disk_path = models.CharField(max_length=1024, blank=True, default="")
    seed_path = models.CharField(max_length=1024, blank=True, default="")
    workdir = models.CharField(max_length=1024, blank=True, default="")
    # Readiness (agent/ssh_ready.py): an SSH banner and host keys seen on the published port 22. None: not
    # watched, port 22 was only asked for on a docker image that does not declare an sshd (docker_ssh).
    ssh_ready = models.BooleanField(null=True, default=False)
    ssh_ready_at = models.DateTimeField(null=True, blank=True)
    host_key_fingerprints = models.JSONField(default=list, blank=True, help_text="SHA256:... as ssh-keygen -l")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = "VM"

    def __str__(self):
        return f"{self.id} ({self.engine}, {self.state})"


class PortAllocation(models.Model):
    """One host port handed to one VM; the unique constraint makes double allocation impossible."""

    host_port = models.PositiveIntegerField(unique=True)
    guest_port = models.PositiveIntegerField()
    vm = models.ForeignKey(Vm, on_delete=models.CASCADE, related_name="port_allocations")

    class Meta:
        ordering = ["host_port"]
        constraints = [models.UniqueConstraint(fields=["vm", "guest_port"], name="agent_port_one_per_guest_port")]

    def __str__(self):
        return f"{self.host_port} -> {self.vm_id}:{self.guest_port}"
