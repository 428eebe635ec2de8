"""Enumerations of the fleet app (NetBox style: one place for every state name)."""

from django.db import models


class HostState(models.TextChoices):
    ONLINE = "online"
    OFFLINE = "offline"
    DETACHED = "detached"  # given up by an operator (POST /api/hosts/{id}/detach): its VMs are lost


class EnvState(models.TextChoices):
    CREATING = "creating"
    ACTIVE = "active"
    STOPPING = "stopping"
    STOPPED = "stopped"
    STARTING = "starting"
    DELETING = "deleting"
    FAILED = "failed"


class VmState(models.TextChoices):
    PENDING = "pending"  # placed and reserved, not yet asked of its agent
    CREATING = "creating"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"


class OnExpiry(models.TextChoices):
    DELETE = "delete"  # the seed's behaviour
    STOP = "stop"  # stop at the deadline, delete at a second one (TTSTACK_STOPPED_GRACE later)


# Engines whose images are not files the agent lists: the docker engine takes any local image tag.
IMAGE_FREE_ENGINES = ("docker",)
