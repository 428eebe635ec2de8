"""Build the docker image ``ttstack/tiny:latest`` without a registry: ``docker import`` of a busybox root.

The root holds Debian's busybox-static (/bin/busybox) with a link per applet, /etc/passwd and /etc/group,
and /init: it writes an index page naming the container's hostname into /www, serves it with
``busybox httpd`` on port 80 and exits promptly on SIGTERM (so ``docker stop`` does not wait for its kill).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time

TAG = "ttstack/tiny:latest"
BUSYBOX = "/bin/busybox"

INIT = """#!/bin/sh
# ttstack/tiny: serve a page naming this host on port 80 until told to stop.
trap 'exit 0' TERM INT
h=$(hostname)
mkdir -p /www
printf '<html><head><title>%s</title></head><body><h1>%s</h1><p>ttstack tiny</p></body></html>\\n' "$h" "$h" \
  > /www/index.html
echo "$h" > /www/hostname
httpd -f -p 80 -h /www &
wait
"""

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def _applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=True).stdout
    return sorted({line.strip() for line in out.splitlines() if line.strip()})


def root_tar() -> bytes:
    """The image's root file system as a tar archive."""
    now = time.time()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(path: str, mode: int = 0o755):
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
            tar.addfile(info)

        def add_file(path: str, data: bytes, mode: int = 0o644):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, now
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "www", "root", "var", "proc", "sys",
                  "dev"):
            add_dir(d, 0o700 if d == "root" else 0o755)
        add_dir("tmp", 0o1777)
        with open(BUSYBOX, "rb") as fh:
            add_file("bin/busybox", fh.read(), 0o755)
        for applet in _applets():
            path = applet.lstrip("/")
            if path == "bin/busybox":
                continue
            info = tarfile.TarInfo(path)
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, "/bin/busybox", 0o777, now
            tar.addfile(info)
        add_file("etc/passwd", PASSWD.encode())
        add_file("etc/group", GROUP.encode())
        add_file("init", INIT.encode(), 0o755)
    return buf.getvalue()


def build_docker_tiny(force: bool = False, log=print, client=None) -> str:
    """Import the image (unless it exists and not force); returns its tag."""
    import docker

    client = client or docker.from_env(timeout=120)
    if not force:
        try:
            client.images.get(TAG)
            log(f"docker-tiny: {TAG} exists")
            return TAG
        except docker.errors.ImageNotFound:
            pass
    repository, tag = TAG.rsplit(":", 1)
    changes = [
        'CMD ["/bin/sh", "/init"]',
        "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "EXPOSE 80/tcp",
        "WORKDIR /",
        'LABEL org.opencontainers.image.description="ttstack tiny: busybox, HTTP on port 80 naming the host"',
    ]
    client.api.import_image_from_data(root_tar(), repository=repository, tag=tag, changes=changes)
    log(f"docker-tiny: imported {TAG}")
    return TAG
