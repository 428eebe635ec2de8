"""`ttstack agent` start-up: refuse a storage that is not there, then reconcile records with the engines."""

import logging

from agent import conf

log = logging.getLogger("agent.startup")


def prepare():
    from agent import storage as storages
    from agent.storage.base import StorageError

    name = conf.storage_name()
    if name not in conf.STORAGE_ALIASES.values():
        raise SystemExit(f"ttstack agent: unknown storage {name!r}; use file (alias raw) or zvol (alias zfs)")
    try:
        storage = storages.get()
    except StorageError as exc:
        raise SystemExit(f"ttstack agent: --storage {name} is not available: {exc}") from None
    ok, why = storage.probe()
    if not ok:
        raise SystemExit(f"ttstack agent: storage {name} does not work here: {why}")
    try:
        conf.port_range()
    except ValueError as exc:
        raise SystemExit(f"ttstack agent: {exc}") from None
    conf.vms_dir().mkdir(parents=True, exist_ok=True)
    conf.image_dir().mkdir(parents=True, exist_ok=True)
    host_id = conf.host_id()

    # Reconcile needs the tables: migrate now (the CLI's own migrate afterwards is then a no-op).
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from agent import services

    try:
        summary = services.reconcile()
    except Exception:  # never refuse to start because an engine misbehaved; the log says why
        log.exception("reconcile failed")
        summary = {}
    finally:
        import os

        from agent import engines

        engines.status()  # probe every engine once, here, and hand the results to the web process
        os.environ[engines.PROBES_ENV] = engines.export_probes()
        engines.reset(keep_probes=True)  # the web server is another process: drop connections made here
    log.info("agent %s: storage %s, images in %s, reconcile %s", host_id, name, conf.image_dir(), summary)
