"""Putting a checked image in place and taking one away: single-file disks in the image directory
(agent/storage/image_dir.py), docker-archive tarballs into the docker daemon (`docker load` through the
SDK; nothing is ever pulled). Names are checked (agent.image_names) before any path is built from them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from agent import conf
from agent import storage as storages
from agent.engines.base import Image
from agent.image_names import ImageNameError, check_docker_ref, check_name, docker_ref
from agent.models import Vm
from agent.storage import image_dir
from ttproject import errors

DISK_FORMATS = ("qcow2", "raw")
# image-dir: a bundle of a directory image (agent/image_bundle.py), as one agent serves it to another
FORMATS = (*DISK_FORMATS, "docker-archive", "image-dir")
QCOW2_MAGIC = b"QFI\xfb"


class BadImage(errors.Invalid):
    """The downloaded file is not what its format says (or is unsafe to boot)."""


def docker_client():
    import docker

    url = conf.docker_url()
    return docker.DockerClient(base_url=url, timeout=300) if url else docker.from_env(timeout=300)


def check_target_name(name: str, fmt: str) -> str:
    """The name an import of `fmt` installs under, checked; a docker name gets its tag (":latest")."""
    if fmt == "docker-archive":
        return docker_ref(check_docker_ref(name))
    return check_name(name)


def disk_dir() -> Path:
    """The file storage's image directory; NotSupported on another storage (zvol images are datasets)."""
    storage = storages.get()
    if storage.name != "file":
        raise errors.NotSupported(f"disk images can be imported into the file storage only (this agent uses "
                                  f"{storage.name})")
    directory = conf.image_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def find_docker_image(ref: str):
    import docker

    try:
        return docker_client().images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def exists(name: str, fmt: str) -> bool:
    if fmt == "docker-archive":
        return find_docker_image(name) is not None
    return image_dir.find_disk_image(name, disk_dir()) is not None


def _check_disk(path: Path, fmt: str) -> None:
    """A qcow2 must be a qcow2 without a backing file (one naming a host file would hand it to the guest)."""
    if fmt != "qcow2":
        return
    with path.open("rb") as fh:
        if fh.read(4) != QCOW2_MAGIC:
            raise BadImage("the file is not a qcow2 image (no QFI magic); import it with format raw if it is a "
                           "raw disk")
    result = subprocess.run(["qemu-img", "info", "-U", "--output=json", "-f", "qcow2", str(path)],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise BadImage(f"qemu-img cannot read the qcow2 image: {result.stderr.strip()[:300]}")
    info = json.loads(result.stdout)
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise BadImage("the qcow2 image has a backing file; import a standalone image (qemu-img convert)")


def install_disk(tmp: Path, name: str, fmt: str, sha256: str) -> Path:
    """Move a checked download to NAME.qcow2|NAME.raw in one rename; its sha256 is recorded first."""
    _check_disk(tmp, fmt)
    directory = tmp.parent
    final = directory / f"{name}.{fmt}"
    if image_dir.find_disk_image(name, directory) is not None:
        raise errors.Conflict(f"image {name!r} appeared on this host while it was being imported")
    tmp.chmod(0o644)  # libvirt's qemu reads base images as another user
    os.rename(tmp, final)
    image_dir.record_sha256(final, sha256)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename survives a crash
    finally:
        os.close(dir_fd)
    return final


def install_dir(tmp: Path, name: str) -> Path:
    """Unpack a checked bundle (flat regular files only) beside it, check its image.json, rename it to NAME."""
    unpacked = tmp.with_name(tmp.name + ".d")
    unpacked.mkdir(mode=0o755)
    try:
        try:
            with tarfile.open(tmp, format=tarfile.USTAR_FORMAT) as tar:
                for member in tar:
                    if not member.isfile() or "/" in member.name or member.name.startswith("."):
                        raise BadImage(f"the bundle holds {member.name!r}: only plain files of the image")
                    with tar.extractfile(member) as src, (unpacked / member.name).open("xb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                        out.flush()
                        os.fsync(out.fileno())
                    (unpacked / member.name).chmod(0o644)
        except tarfile.TarError as exc:
            raise BadImage(f"the file is not an image bundle: {exc}") from exc
        if image_dir.image_of_dir(unpacked) is None:
            raise BadImage("the bundle's image.json does not describe a usable image (see the agent's log)")
        final = tmp.parent / name
        if image_dir.find_disk_image(name, tmp.parent) is not None:
            raise errors.Conflict(f"image {name!r} appeared on this host while it was being imported")
        os.rename(unpacked, final)
        return final
    finally:
        if unpacked.exists():
            shutil.rmtree(unpacked)


def load_docker_archive(tmp: Path, ref: str) -> str:
    """`docker load` of a checked tarball, tagged as `ref`; the image id."""
    try:
        with tarfile.open(tmp) as tar:
            tar.getmember("manifest.json")
    except (tarfile.TarError, KeyError) as exc:
        raise BadImage(f"the file is not a docker-archive tarball (docker save): {exc}") from exc
    import docker

    try:
        with tmp.open("rb") as fh:
            loaded = docker_client().images.load(fh)
    except docker.errors.APIError as exc:
        raise errors.UpstreamFailed(f"docker load failed: {exc.explanation or exc}") from exc
    if not loaded:
        raise BadImage("docker load found no image in the tarball")
    repository, tag = ref.rsplit(":", 1) if ":" in ref.rsplit("/", 1)[-1] else (ref, "latest")
    loaded[0].tag(repository, tag)
    return loaded[0].id


def _in_use(name: str, docker: bool) -> list[str]:
    if docker:
        return [vm.id for vm in Vm.objects.only("id", "image") if docker_ref(vm.image) == name]
    return list(Vm.objects.filter(image=name).values_list("id", flat=True))


def _disk_image(name: str) -> Image | None:
    try:
        check_name(name)
    except ImageNameError:
        return None
    return image_dir.find_disk_image(name, conf.image_dir())


def delete_image(name: str) -> dict:
    """Remove a disk image (file or directory) or a docker image; Conflict while a VM of this agent uses it."""
    image = _disk_image(name)
    ref = None
    if image is None:
        ref = docker_ref(check_docker_ref(name))
        if find_docker_image(ref) is None:
            raise errors.NotFound(f"no image {name!r} on this host")
    users = _in_use(ref or name, docker=ref is not None)
    if users:
        raise errors.Conflict(f"image {name!r} is used by VM(s) {', '.join(users[:10])}; delete them first")
    if ref is not None:
        docker_client().images.remove(ref, noprune=False)
        return {"name": ref, "kind": "docker", "deleted": True}
    directory = conf.image_dir().resolve()
    if image.disk.parent == directory:
        image_dir.digest_file(image.disk).unlink(missing_ok=True)
        image.disk.unlink()
    else:
        shutil.rmtree(directory / name)
    return {"name": name, "kind": "disk", "deleted": True}
