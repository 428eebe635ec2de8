"""ZFS zvol storage (alias `zfs`): base images are volumes, a VM disk is a clone of the image's snapshot.

Layout under the dataset TTSTACK_ZFS_DATASET (or TTSTACK_ZFS_POOL + "/ttstack"):
  DATASET/images/NAME                   a volume holding the base image (raw), e.g. made with
                                        `zfs create -V 10G DATASET/images/NAME` + `dd if=disk.raw of=/dev/zvol/...`
  DATASET/images/NAME@ttstack-base      taken once, the first time a VM is made from NAME
  DATASET/vms/VM_ID                     `zfs clone` of that snapshot, grown with `zfs set volsize=`
The VM's disk path is the volume's device node TTSTACK_ZVOL_DEV_DIR/DATASET/vms/VM_ID (/dev/zvol on
Linux and FreeBSD). Clones share blocks with the snapshot: creating a VM never copies the base.

Optional user properties on an image volume describe direct kernel boot (firecracker):
`ttstack:kernel`, `ttstack:initrd`, `ttstack:cmdline` (host paths / kernel command line).

Environment: TTSTACK_ZFS_BIN (default `zfs` on PATH), TTSTACK_ZFS_DATASET, TTSTACK_ZFS_POOL,
TTSTACK_ZVOL_DEV_DIR (/dev/zvol).
"""

from __future__ import annotations

from pathlib import Path

from agent import conf, procutil
from agent.engines import probes
from agent.engines.base import DISK_IMAGE, Image
from agent.storage.base import Storage, StorageError

SNAPSHOT = "ttstack-base"
USER_PROPS = ("ttstack:kernel", "ttstack:initrd", "ttstack:cmdline")


def _configured_dataset() -> str:
    """TTSTACK_ZFS_DATASET, else TTSTACK_ZFS_POOL/ttstack, else "" (none configured)."""
    dataset = (conf.option("TTSTACK_ZFS_DATASET") or "").strip("/")
    if dataset:
        return dataset
    pool = (conf.option("TTSTACK_ZFS_POOL") or "").strip("/")
    return f"{pool}/ttstack" if pool else ""


class ZvolStorage(Storage):
    name = "zvol"

    def __init__(self, dataset: str | None = None, *, dev_dir: str | Path | None = None,
                 assume_module: bool = False):
        """`assume_module=True` skips only the kernel-module check (tests driving the zfs double on Linux);
        the probe then says so."""
        self.dataset = (dataset or _configured_dataset()).strip("/")
        self.dev_dir = Path(dev_dir or conf.option("TTSTACK_ZVOL_DEV_DIR"))
        self.assume_module = assume_module

    # ---- helpers ---------------------------------------------------------------------------------------------
    def _zfs(self, *args: str, check: bool = True):
        zfs = probes.resolve_binary("TTSTACK_ZFS_BIN", "zfs") or "zfs"
        return procutil.run_tool([zfs, *args], error=StorageError, check=check, timeout=120)

    def _exists(self, name: str, kind: str = "volume") -> bool:
        done = self._zfs("list", "-H", "-o", "name", "-t", kind, name, check=False)
        return done.returncode == 0 and name in done.stdout.split()

    def _image_ds(self, image_name: str) -> str:
        return f"{self.dataset}/images/{image_name}"

    def _vm_ds(self, vm_id: str) -> str:
        return f"{self.dataset}/vms/{vm_id}"

    def device(self, dataset: str) -> Path:
        return self.dev_dir / dataset

    # ---- Storage interface -----------------------------------------------------------------------------------
    def probe(self) -> tuple[bool, str]:
        ok, why = probes.binary_present("TTSTACK_ZFS_BIN", "zfs")
        if not ok:
            return False, why
        ok, note = probes.assumed_or_probed(
            self.assume_module, "zfs kernel module not checked: assumed loaded by the caller (assume_module=True)",
            probes.zfs_module_loaded)
        if not ok:
            return False, note
        if not self.dataset:
            return False, "no dataset configured (set TTSTACK_ZFS_DATASET or TTSTACK_ZFS_POOL)"
        done = self._zfs("list", "-H", "-o", "name", self.dataset, check=False)
        if done.returncode != 0:
            return False, (done.stderr or done.stdout).strip() or f"zfs list {self.dataset} failed"
        return True, note

    def create_disk(self, vm_id: str, image: Image, size_mib: int, workdir: Path) -> Path:
        base = self._image_ds(image.name)
        snapshot = f"{base}@{SNAPSHOT}"
        clone = self._vm_ds(vm_id)
        if not self._exists(base):
            raise StorageError(f"image {image.name!r} is not a volume under {self.dataset}/images")
        if not self._exists(snapshot, "snapshot"):
            done = self._zfs("snapshot", snapshot, check=False)
            if done.returncode != 0 and "dataset already exists" not in done.stderr:  # a concurrent create won
                raise StorageError(procutil.tool_failure(["zfs", "snapshot", snapshot], done))
        if not self._exists(f"{self.dataset}/vms", "filesystem"):
            done = self._zfs("create", "-p", f"{self.dataset}/vms", check=False)
            if done.returncode != 0 and "dataset already exists" not in done.stderr:
                raise StorageError(procutil.tool_failure(["zfs", "create", f"{self.dataset}/vms"], done))
        if self._exists(clone):
            origin = self._zfs("get", "-H", "-o", "value", "origin", clone).stdout.strip()
            if origin != snapshot:
                raise StorageError(f"{clone} exists and is not a clone of {snapshot} (origin {origin})")
        else:
            self._zfs("clone", "-o", f"ttstack:vm={vm_id}", snapshot, clone)
        try:
            current = int(self._zfs("get", "-H", "-p", "-o", "value", "volsize", clone).stdout.strip())
            wanted = size_mib * 1024 * 1024
            if wanted > current:
                self._zfs("set", f"volsize={size_mib}M", clone)
        except (StorageError, ValueError) as exc:
            self._zfs("destroy", clone, check=False)
            raise StorageError(f"cannot grow {clone} to {size_mib} MiB: {exc}") from exc
        return self.device(clone)

    def destroy_disk(self, vm_id: str, workdir: Path) -> None:
        clone = self._vm_ds(vm_id)
        done = self._zfs("destroy", clone, check=False)
        if done.returncode != 0 and "dataset does not exist" not in done.stderr:
            raise StorageError(procutil.tool_failure(["zfs", "destroy", clone], done))

    def location(self) -> str:
        return f"the zvol storage ({self.dataset}/images)"

    def images(self) -> list[Image]:
        parent = f"{self.dataset}/images"
        columns = ["name", "volsize", "referenced", *USER_PROPS]
        done = self._zfs("list", "-H", "-p", "-o", ",".join(columns), "-t", "volume", "-r", parent,
                         check=False)
        if done.returncode != 0:
            if "dataset does not exist" in done.stderr:
                return []
            raise StorageError(procutil.tool_failure(["zfs", "list", parent], done))
        found = []
        for line in done.stdout.splitlines():
            fields = line.split("\t")
            if len(fields) != len(columns):
                continue
            name, _volsize, referenced, kernel, initrd, cmdline = fields
            short = name[len(parent) + 1:]
            if "/" in short or not short:
                continue
            found.append(Image(
                name=short, engine_kind=DISK_IMAGE, disk=self.device(name), disk_format="raw",
                kernel=Path(kernel) if kernel != "-" else None, initrd=Path(initrd) if initrd != "-" else None,
                cmdline=cmdline if cmdline != "-" else "", size=int(referenced) if referenced.isdigit() else 0,
                extra={"dataset": name}))
        return found
