"""What an engine is handed for one VM: a `GuestSpec` built from the VM's record."""

from __future__ import annotations

import logging
from pathlib import Path

from agent import conf
from agent import engines as registry
from agent.engines.base import Engine, GuestSpec, Image
from agent.image_lookup import placeholder, resolve_image
from agent.models import Vm
from ttproject import errors

log = logging.getLogger(__name__)


def image_of(vm: Vm) -> Image:
    """The VM's image for an engine call; a placeholder when it is gone (destroy needs none)."""
    engine = None
    try:
        engine = registry.get(vm.engine)
        return resolve_image(vm.image, engine)
    except errors.DomainError as exc:  # unknown image, engine or storage that cannot be reached
        log.debug("image of %s: %s", vm.id, exc)
        return placeholder(vm.image, engine)


def spec_for(vm: Vm, image: Image | None = None) -> GuestSpec:
    return GuestSpec(
        vm_id=vm.id,
        name=vm.guest_name or conf.guest_name(vm.id),
        host_id=conf.host_id(),
        image=image or image_of(vm),
        cpu=vm.cpu,
        mem=vm.mem,
        disk=vm.disk,
        port_map={int(g): int(h) for g, h in (vm.port_map or {}).items()},
        publish_addr=vm.publish_addr,
        deny_outgoing=vm.deny_outgoing,
        hostname=vm.hostname,
        ssh_keys=list(vm.ssh_keys or []),
        disk_path=Path(vm.disk_path) if vm.disk_path else None,
        seed_path=Path(vm.seed_path) if vm.seed_path else None,
        workdir=Path(vm.workdir) if vm.workdir else conf.vms_dir() / vm.id,
        controller=vm.controller,
        network=vm.network,
        private_ip=vm.ip if vm.network else "",
    )


def spec_without_image(vm: Vm, engine: Engine | None) -> GuestSpec:
    """For the verbs that never read the image (delete, refresh): no lookup."""
    return spec_for(vm, placeholder(vm.image, engine))


def orphan_spec(vm_id: str, engine: Engine) -> GuestSpec:
    """Enough to destroy a guest of this agent that has no record."""
    return GuestSpec(vm_id=vm_id, name=conf.guest_name(vm_id), host_id=conf.host_id(),
                     image=placeholder("", engine), cpu=1, mem=1, disk=1, port_map={},
                     publish_addr=conf.publish_addr(), workdir=conf.vms_dir() / vm_id)
