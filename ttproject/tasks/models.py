"""The one Task model of every role: a long action, its state, its output, its result."""

import uuid

from django.db import models


def new_task_id() -> str:
    return str(uuid.uuid4())


class TaskStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED)


class Task(models.Model):
    id = models.CharField(primary_key=True, max_length=36, default=new_task_id, editable=False)
    action = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING, db_index=True)
    target = models.CharField(max_length=255, blank=True, default="", db_index=True,
                              help_text="What the task acts on: an environment id, a VM name...")
    owner = models.CharField(max_length=150, blank=True, default="", db_index=True)
    params = models.JSONField(default=dict, blank=True, help_text="The job's input.")
    command = models.JSONField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    stderr = models.TextField(null=True, blank=True)
    # Lines joined by "\n" and appended with one UPDATE each, so concurrent writers never lose a line.
    logs = models.TextField(default="", blank=True)
    # Bumped by every change: a watcher compares one integer instead of the whole row.
    version = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=255, blank=True, default="",
                                  help_text="host:pid of the worker that runs it")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["action", "target"])]

    def __str__(self):
        return f"{self.action} {self.target} [{self.status}]"

    @property
    def is_done(self) -> bool:
        return self.status in TERMINAL

    @property
    def log_lines(self) -> list[str]:
        return self.logs.splitlines()


class Worker(models.Model):
    """One job-running process (Pulp's Worker): its row is refreshed every third of TTSTACK_WORKER_TIMEOUT
    while it lives. A task claimed by a process whose row went stale is handed back, on whatever machine
    that process ran (ttproject.tasks.runner.requeue_orphans)."""

    name = models.CharField(primary_key=True, max_length=255, help_text="host:pid, as in Task.claimed_by")
    started_at = models.DateTimeField(auto_now_add=True)
    last_heartbeat = models.DateTimeField(db_index=True)

    def __str__(self):
        return self.name


class SigningKey(models.Model):
    """A fingerprint of the secret key the deployment's processes sign their queue messages with: the first
    process to start records it, a process with another key refuses to start (ttproject.tasks.workers)."""

    name = models.CharField(primary_key=True, max_length=32)
    fingerprint = models.CharField(max_length=64)
    recorded_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.name
