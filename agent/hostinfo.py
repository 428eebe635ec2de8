"""GET /api/info: who this agent is, what it offers (engines, storage, images) and what it has left."""

from __future__ import annotations

import socket

from agent import conf
from agent import engines as registry
from agent import storage as storages
from agent.image_lookup import list_images
from agent.models import Vm
from agent.resources import resources
from ttproject import exposure
from ttproject.urls.common import VERSION


def info() -> dict:
    images = list_images()  # first: an engine that fails to list them is probed again just below
    available, unavailable = registry.status()
    return {
        "host_id": conf.host_id(),
        "hostname": socket.gethostname(),
        "version": VERSION,
        "engines": available,
        "engines_unavailable": unavailable,
        "storage": storages.get().name,
        "resources": resources(),
        "images": images,
        "vm_count": Vm.objects.count(),
        **exposure.report(),
    }
