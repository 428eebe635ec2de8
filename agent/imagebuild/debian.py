"""What the Debian 12 images share: the suite, the mirror taken from this machine's apt sources, and the
mmdebstrap command line that makes a root from Debian packages.

Mirror: apt's own view of its sources (``apt-cache policy``, which reads both /etc/apt/sources.list and
/etc/apt/sources.list.d, one-line and deb822 formats): the URI of the archive labelled ``Debian`` and of
``Debian-Security``. ``TTSTACK_DEBIAN_MIRROR`` (a URI such as http://deb.debian.org/debian) replaces the
first. The image's own /etc/apt/sources.list names the same mirror (mmdebstrap writes it).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from agent.imagebuild.steps import BuildError, run

SUITE = "bookworm"
VERSION = "12"

# Documentation, manual pages and translations are left out of the images (dpkg path filters): they are
# a sixth of a minimal root and nobody reads them in a disposable VM. Copyright files stay.
DPKG_FILTERS = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/info/*",
]

_POLICY_SOURCE = re.compile(r"^\s*-?\d+\s+(\S+)\s+(\S+?)/(\S+)\s+\S+\s+Packages\s*$")
_POLICY_RELEASE = re.compile(r"^\s*release\s+(\S+)\s*$")


def apt_archives(policy: str) -> dict[str, str]:
    """{"Debian": URI, "Debian-Security": URI} found in ``apt-cache policy`` output (first of each)."""
    found: dict[str, str] = {}
    uri = None
    for line in policy.splitlines():
        source = _POLICY_SOURCE.match(line)
        if source:
            uri = source.group(1)
            continue
        release = _POLICY_RELEASE.match(line)
        if release and uri:
            fields = dict(f.split("=", 1) for f in release.group(1).split(",") if "=" in f)
            if fields.get("o") == "Debian" and fields.get("l") in ("Debian", "Debian-Security"):
                found.setdefault(fields["l"], uri.rstrip("/"))
            uri = None
    return found


def mirror_lines() -> list[str]:
    """sources.list lines for SUITE, its updates and its security archive, from this machine's apt setup."""
    from agent import conf

    override = (conf.option("TTSTACK_DEBIAN_MIRROR") or "").strip()
    archives = apt_archives(run(["apt-cache", "policy"]).stdout)
    main = override or archives.get("Debian")
    if not main:
        raise BuildError("no Debian archive in this machine's apt sources (run apt-get update, or set "
                         "TTSTACK_DEBIAN_MIRROR to a Debian mirror URI)")
    lines = [f"deb {main} {SUITE} main", f"deb {main} {SUITE}-updates main"]
    if archives.get("Debian-Security"):
        lines.append(f"deb {archives['Debian-Security']} {SUITE}-security main")
    return lines


def mmdebstrap_argv(target: Path, packages: list[str], customize: Path, mirrors: list[str]) -> list[str]:
    """mmdebstrap making ``target`` (a directory, or a .tar) from Debian packages; ``customize`` is a shell
    script run on the build host with the new root as its argument once the packages are installed."""
    argv = ["mmdebstrap", "--variant=apt", "--mode=root", "--format=" + ("tar" if target.suffix == ".tar" else
                                                                          "directory"),
            "--include=" + ",".join(packages)]
    argv += [f"--dpkgopt={rule}" for rule in DPKG_FILTERS]
    # The hook is a shell command; $1 is the root. Quoted, so any path works.
    argv += [f'--customize-hook=sh {shlex.quote(str(customize))} "$1"', SUITE, str(target), *mirrors]
    return argv
