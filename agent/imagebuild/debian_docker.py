"""Build "debian-12" for the docker engine: a Debian 12 root from Debian packages, made a docker image with
``docker import`` (no registry is ever contacted).

mmdebstrap writes the root as a tar into the build cache (``scripts/debian/docker-customize.sh`` adds the
default user ``debian``, the sshd settings and the entry ``scripts/debian/docker-entry.sh``); the docker
daemon imports it with the entry, the exposed port and the labels of the contract (docs/images.md):

  io.ttstack.ssh-port=22                            publish this port and check it for an SSH banner
  io.ttstack.ssh-keys=/run/ttstack/authorized_keys  bind-mount the env's keys here (read-only), or pass
                                                    them in TTSTACK_SSH_KEYS
  io.ttstack.default-user=debian, io.ttstack.os=debian, io.ttstack.version=12, io.ttstack.build-key=KEY

Tags: ``ttstack/debian-12:latest`` and ``debian-12:latest`` (the agent's image name ``debian-12`` means the
latter, so one name asks for Debian 12 on every engine). A daemon that already holds the tag with this
recipe's build key is left alone; another daemon (or one that lost the image) imports the cached tar again.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from agent.imagebuild import cache, debian
from agent.imagebuild.steps import BuildError, Log, Steps

NAME = "debian-12"
TAG = "ttstack/debian-12:latest"
AGENT_TAG = "debian-12:latest"
PACKAGES = ["openssh-server", "sudo", "iproute2", "iputils-ping", "procps", "netbase", "ca-certificates", "less"]
ENTRY = "/usr/local/sbin/ttstack-entry"
KEYS_PATH = "/run/ttstack/authorized_keys"
SSH_PORT = 22
DEFAULT_USER = "debian"
SCRIPTS = [cache.SCRIPTS / "debian" / "docker-customize.sh", cache.SCRIPTS / "debian" / "docker-entry.sh"]
CONFIG = [f'ENTRYPOINT ["{ENTRY}"]', f"EXPOSE {SSH_PORT}/tcp",
          "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8",
          "WORKDIR /root"]
# Everything that shapes the image; with the scripts' bytes it makes the cache key. Bump "revision" when
# this module changes what it builds in a way the rest does not show.
RECIPE = {"name": NAME, "engine": "docker", "revision": 1, "suite": debian.SUITE, "packages": PACKAGES,
          "dpkg": debian.DPKG_FILTERS, "config": CONFIG, "keys": KEYS_PATH, "user": DEFAULT_USER}


def cache_entry() -> Path:
    return cache.images_dir() / f"{NAME}-docker-{cache.recipe_key(RECIPE, SCRIPTS)}"


def labels(key: str, build_date: str) -> dict[str, str]:
    return {
        "io.ttstack.ssh-port": str(SSH_PORT),
        "io.ttstack.ssh-keys": KEYS_PATH,
        "io.ttstack.default-user": DEFAULT_USER,
        "io.ttstack.os": "debian",
        "io.ttstack.version": debian.VERSION,
        "io.ttstack.build-key": key,
        "org.opencontainers.image.created": build_date,
        "org.opencontainers.image.description": f"Debian {debian.VERSION} ({debian.SUITE}) with sshd as its entry; "
                                                f"SSH keys from {KEYS_PATH} or TTSTACK_SSH_KEYS",
    }


def dockerfile_changes(meta: dict) -> list[str]:
    """The image config ``docker import --change`` sets (docker's default stop signal, SIGTERM, ends sshd)."""
    return CONFIG + [f"LABEL {name}={json.dumps(value)}"
                     for name, value in labels(meta["build_key"], meta["build_date"]).items()]


def build_entry(entry: Path, log: Log) -> None:
    """The root tar and its metadata in the cache entry (atomically)."""
    steps = Steps(f"{NAME} (docker)", total=1, log=log)
    mirrors = debian.mirror_lines()
    steps.say(f"building from {', '.join(mirrors)}")
    with cache.staging(entry) as out:
        os.chmod(out, 0o755)  # apt downloads as _apt
        steps.stream("Debian packages into a root tar (mmdebstrap)",
                     debian.mmdebstrap_argv(out / "root.tar", PACKAGES, SCRIPTS[0], mirrors))
        meta = {"os": "debian", "version": debian.VERSION, "default_user": DEFAULT_USER, "tags": [TAG, AGENT_TAG],
                "size": (out / "root.tar").stat().st_size, "sha256": cache.sha256_of(out / "root.tar"),
                "build_date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "build_key": entry.name.rsplit("-", 1)[-1]}
        (out / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
    steps.finished(f"built {entry} ({meta['size'] >> 20} MiB root)")


def _current(client, key: str) -> bool:
    import docker

    try:
        image = client.images.get(AGENT_TAG)
    except docker.errors.ImageNotFound:
        return False
    got = (image.attrs.get("Config") or {}).get("Labels") or {}
    return got.get("io.ttstack.build-key") == key and TAG in image.tags


def build(force: bool = False, log: Log = print, client=None) -> str:
    """Import the image into the docker daemon (building its root into the cache first when needed)."""
    import docker

    client = client or docker.from_env(timeout=600)
    entry = cache_entry()
    key = entry.name.rsplit("-", 1)[-1]
    with cache.locked(entry):
        if not force and _current(client, key):
            log(f"{NAME} (docker): {AGENT_TAG} is up to date (build {key})")
            return AGENT_TAG
        if force or not (entry / "image.json").is_file():
            build_entry(entry, log)
        meta = json.loads((entry / "image.json").read_text())
        log(f"{NAME} (docker): docker import {entry / 'root.tar'} as {TAG}")
        repository, tag = TAG.rsplit(":", 1)
        try:
            client.api.import_image_from_file(str(entry / "root.tar"), repository=repository, tag=tag,
                                              changes=dockerfile_changes(meta))
            client.images.get(TAG).tag(*AGENT_TAG.rsplit(":", 1))
        except docker.errors.DockerException as exc:
            raise BuildError(f"{NAME} (docker): docker import failed: {exc}") from exc
    log(f"{NAME} (docker): imported {TAG} = {AGENT_TAG}")
    return AGENT_TAG

