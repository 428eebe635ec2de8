"""`ttstack agent` start-up: refuse a storage that is not there, then reconcile records with the engines.

The checks raise domain errors; this hook is the edge that turns them into the CLI's refusal (SystemExit).
"""

import logging
import os

from agent import conf
from ttproject import errors
from ttproject.datadir import let_others_traverse

log = logging.getLogger("agent.startup")


def prepare():
    from agent import storage as storages

    try:
        storage = storages.check_works()
        conf.port_range()
    except (errors.DomainError, ValueError) as exc:
        raise SystemExit(f"ttstack agent: {exc}") from None
    conf.vms_dir().mkdir(parents=True, exist_ok=True)
    conf.image_dir().mkdir(parents=True, exist_ok=True)
    host_id = conf.host_id()

    # Reconcile needs the tables: migrate now (the CLI's own migrate afterwards is then a no-op).
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from agent import engines, image_import

    image_import.fail_interrupted()
    from agent.reconcile import reconcile

    try:
        summary = reconcile()
    except Exception:  # never refuse to start because an engine misbehaved; the log says why
        log.exception("reconcile failed")
        summary = {}
    finally:
        available, _unavailable = engines.status()  # probe every engine once, hand the results to the web
        _let_qemu_reach_its_disks(available)
        os.environ[engines.PROBES_ENV] = engines.export_probes()
        engines.reset(keep_probes=True)  # the web server is another process: drop connections made here
    log.info("agent %s: storage %s, images in %s, reconcile %s", host_id, storage.name, conf.image_dir(), summary)


def _let_qemu_reach_its_disks(available: list[str]) -> None:
    """The data dir is 0700, but qemu runs as libvirt's user (not root) under the DAC driver and must walk
    to the VM disks below it: then the data dir gets search permission for others (0711, never read)."""
    if "qemu" not in available:
        return
    from agent import engines

    if engines.get("qemu").dac_identity() is not None:
        let_others_traverse(conf.data_dir())
