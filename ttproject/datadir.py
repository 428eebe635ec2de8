"""The data dir of a role and the database in it: private to the user that runs it (docs/security.md).

The data dir is made 0700; the SQLite file is created 0600 before the first connection opens it, so it is
never readable by others, and SQLite gives its -wal and -shm files the database file's mode. An existing
data dir that others can read is not changed (it may be a directory the operator shares on purpose), only
reported; our own files in it are tightened.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("ttstack")


def private_dir(path: Path) -> Path:
    """`path`, made 0700 if it does not exist; a warning when others may list it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o044:
        log.warning("data dir %s is readable by others (mode %o): `chmod 700 %s`", path, mode, path)
    return path


def private_file(path: Path) -> None:
    """Create `path` 0600 (empty) if missing; tighten it to 0600 if it exists with a looser mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)


def private_database() -> None:
    """The role's SQLite file (and its -wal/-shm, when there) 0600 before Django first opens it."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.sqlite3" or str(db["NAME"]).startswith(("file:", ":memory:")):
        return
    path = Path(db["NAME"])
    private_file(path)
    for suffix in ("-wal", "-shm"):
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            private_file(sidecar)


def let_others_traverse(path: Path) -> None:
    """Add search (x, never read) for group and others: for a user like libvirt-qemu that must reach the
    VM disks below `path` without listing it."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o011 != 0o011:
        path.chmod(mode | 0o011)
        log.info("data dir %s made %o: qemu's user must traverse it to the VM disks", path, mode | 0o011)
