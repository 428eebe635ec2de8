"""`ttstack image build tiny|docker-tiny`.

- tiny: the small bootable guest (Debian cloud kernel + busybox/dropbear initramfs), written to
  <TTSTACK_IMAGE_DIR>/tiny (agent.imagebuild.tiny.build_tiny; the guest's scripts are in scripts/tiny/).
- docker-tiny: the docker image ttstack/tiny:latest, `docker import` of a busybox-static root serving HTTP
  on port 80 (agent.imagebuild.docker_tiny.build_docker_tiny).

Downloaded packages and finished images are kept in the build cache (agent.imagebuild.cache,
TTSTACK_CACHE_DIR).
"""

from pathlib import Path

KINDS = ("tiny", "docker-tiny")


def build(kind: str, force: bool = False, log=print) -> Path | str:
    if kind == "tiny":
        from agent import conf
        from agent.imagebuild.tiny import build_tiny

        return build_tiny(conf.image_dir(), name="tiny", force=force, log=log)
    if kind == "docker-tiny":
        from agent.imagebuild.docker_tiny import build_docker_tiny

        return build_docker_tiny(force=force, log=log)
    raise ValueError(f"unknown image kind {kind!r}; expected one of {', '.join(KINDS)}")
