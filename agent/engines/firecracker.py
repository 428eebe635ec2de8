"""Firecracker microVMs (Linux with working KVM), driven through Firecracker's HTTP API on a Unix socket.

One guest = one `firecracker` process (optionally started by `jailer`), configured with the documented API:
PUT /machine-config, /boot-source, /drives/{id} (rootfs + read-only NoCloud seed), /network-interfaces/{id}
(a tap device), then PUT /actions {"action_type": "InstanceStart"}; state from GET /. Stop is
SendCtrlAltDel (the guest, booted with reboot=k, resets and firecracker exits), then SIGKILL after the
timeout. A stopped guest has no process: start launches and configures a new one from the saved config.

Image layout (TTSTACK_IMAGE_DIR/NAME/image.json): an uncompressed ELF `vmlinux` kernel, optional initrd,
and a raw disk (firecracker has no qcow2 support: the disk the storage makes must be raw, e.g. zvol).

Networking (engines/firecracker_net.py): a tap per guest, a /30 from TTSTACK_FIRECRACKER_SUBNET (host .1,
guest .2, given to the guest kernel with `ip=`) and iptables rules: DNAT for the published ports, and for
deny_outgoing a drop of the NEW connections coming in from the tap. The API client is engines/firecracker_api.py.

Environment: TTSTACK_FIRECRACKER_BIN, TTSTACK_JAILER_BIN, TTSTACK_FIRECRACKER_JAILER (1/0; default: use the
jailer when its binary is found), TTSTACK_JAILER_UID/GID (65534), TTSTACK_JAILER_CHROOT_BASE (/srv/jailer),
TTSTACK_FIRECRACKER_RUN_DIR (DATA_DIR/firecracker), TTSTACK_FIRECRACKER_SUBNET (172.30.0.0/16),
TTSTACK_IP_BIN, TTSTACK_IPTABLES_BIN. See docs/engines.md.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import stat
import tempfile
from pathlib import Path

from agent import conf, procutil
from agent.engines import firecracker_net, probes
from agent.engines.base import RUNNING, STOPPED, EngineError, GuestSpec, Image
from agent.engines.firecracker_api import FirecrackerAPI
from agent.engines.hosttool import ProcessEngine, default_run_dir, is_qcow2, log_tail, short_hash

DEFAULT_BOOT_ARGS = "console=ttyS0 reboot=k panic=1 pci=off"
SOCKET_WAIT = 10.0


def _fc_id(name: str) -> str:
    """Firecracker/jailer ids allow [A-Za-z0-9-], at most 64 characters."""
    cleaned = re.sub(r"[^A-Za-z0-9-]", "-", name)
    if cleaned != name or len(cleaned) > 64:
        cleaned = f"{cleaned[:52]}-{short_hash(name)}"
    return cleaned


class FirecrackerEngine(ProcessEngine):
    name = "firecracker"
    guest_noun = "firecracker guest"

    def __init__(self, run_dir: str | Path | None = None, *, assume_kvm: bool = False,
                 use_jailer: bool | None = None, host_id: str | None = None):
        """`assume_kvm=True` skips only the KVM functional probe (tests driving the firecracker double);
        the probe then says so instead of claiming KVM was checked."""
        self.run_dir = Path(run_dir) if run_dir else default_run_dir("TTSTACK_FIRECRACKER_RUN_DIR",
                                                                            "firecracker")
        self.assume_kvm = assume_kvm
        self._use_jailer = use_jailer
        self.host_id = host_id
        self.subnet = ipaddress.ip_network(conf.option("TTSTACK_FIRECRACKER_SUBNET"))
        self.chroot_base = Path(conf.option("TTSTACK_JAILER_CHROOT_BASE"))
        self.jailer_uid = int(conf.option("TTSTACK_JAILER_UID"))
        self.jailer_gid = int(conf.option("TTSTACK_JAILER_GID"))

    def can_boot(self, image: Image) -> bool:
        return super().can_boot(image) and image.kernel is not None  # it boots a kernel, never a disk's loader

    # ---- probing -----------------------------------------------------------------------------------------
    def probe(self) -> tuple[bool, str]:
        ok, why = probes.binary_present("TTSTACK_FIRECRACKER_BIN", "firecracker")
        if not ok:
            return False, why
        if self.jailer_enabled() and not probes.resolve_binary("TTSTACK_JAILER_BIN", "jailer"):
            return False, "TTSTACK_FIRECRACKER_JAILER=1 but the jailer binary is not found (set TTSTACK_JAILER_BIN)"
        ok, why = probes.binary_present("TTSTACK_IP_BIN", "ip")
        if not ok:
            return False, why
        ok, why = probes.binary_present("TTSTACK_IPTABLES_BIN", "iptables")
        if not ok:
            return False, why
        if self.assume_kvm:
            return True, "KVM not probed: assumed working by the caller (assume_kvm=True)"
        return probes.kvm_works()

    def jailer_enabled(self) -> bool:
        if self._use_jailer is not None:
            return self._use_jailer
        setting = conf.option("TTSTACK_FIRECRACKER_JAILER")  # None: use the jailer when it is found
        if setting is not None:
            return bool(setting)
        return probes.resolve_binary("TTSTACK_JAILER_BIN", "jailer") is not None

    # ---- paths and metadata ------------------------------------------------------------------------------
    def _socket_path(self, name: str, chroot_root: Path | None) -> str:
        if chroot_root is not None:
            return str(chroot_root / "run" / "firecracker.socket")
        path = str(self._dir(name) / "api.sock")
        if len(path) > 100:  # sun_path is 108 bytes
            path = os.path.join(tempfile.gettempdir(), f"ttfc-{short_hash(str(self._dir(name)), 16)}.sock")
        return path

    def _allocate_index(self, name: str) -> int:
        used = self._used("net_index", but=name)
        capacity = self.subnet.num_addresses // 4
        for index in range(1, capacity):
            if index not in used:
                return index
        raise EngineError(f"no free /30 left in {self.subnet} for a firecracker tap")

    # ---- Engine interface --------------------------------------------------------------------------------
    def create(self, spec: GuestSpec) -> None:
        self._require()
        if spec.image.kernel is None:
            raise EngineError(f"image {spec.image.name!r} has no kernel: firecracker boots a vmlinux directly "
                              "(image.json with \"kernel\")")
        if spec.disk_path is None:
            raise EngineError("firecracker needs the VM's disk (storage made none)")
        if is_qcow2(spec.disk_path):
            raise EngineError(f"{spec.disk_path} is qcow2; firecracker only boots raw disks "
                              "(use the zvol storage or a raw image)")
        existing = self._meta(spec.name)
        if existing and self._alive(existing):
            return  # created before (idempotent create)
        index = existing["net_index"] if existing else self._allocate_index(spec.name)
        net = self.subnet.network_address + 4 * index
        meta = self._new_meta(
            spec, fc_id=_fc_id(spec.name), cpu=spec.cpu, mem=spec.mem, net_index=index,
            host_ip=str(net + 1), guest_ip=str(net + 2), tap=f"tt{short_hash(spec.name)}",
            mac="06:00:" + ":".join(short_hash(spec.name, 8)[i:i + 2] for i in range(0, 8, 2)),
            kernel=str(spec.image.kernel), initrd=str(spec.image.initrd) if spec.image.initrd else None,
            cmdline=spec.image.cmdline or DEFAULT_BOOT_ARGS,
            disk=str(spec.disk_path), seed=str(spec.seed_path) if spec.seed_path else None,
            jailer=self.jailer_enabled(), pid=None, rules=[])
        self._save(meta)  # recorded before any side effect, so destroy finds what to clean up
        self._setup_network(meta)
        self._launch(meta)

    def _restore_network(self, meta: dict) -> None:
        if not firecracker_net.link_exists(meta["tap"]):
            meta["rules"] = []
            self._setup_network(meta)

    # ---- stop and destroy (ProcessEngine) ----------------------------------------------------------------
    def _shut_down(self, meta: dict, timeout: float) -> bool:
        try:
            FirecrackerAPI(meta["socket"]).put("/actions", {"action_type": "SendCtrlAltDel"})
        except EngineError:
            return False
        return procutil.wait_pid_exit(meta["pid"], timeout)

    def _force_off(self, meta: dict) -> None:
        procutil.kill_pid(meta["pid"], signal.SIGKILL)

    def _remove_files(self, meta: dict) -> None:
        if meta.get("chroot"):
            shutil.rmtree(Path(meta["chroot"]).parent, ignore_errors=True)
        super()._remove_files(meta)

    # ---- internals ---------------------------------------------------------------------------------------
    def _state_of(self, meta: dict) -> str:
        if not self._alive(meta):
            return STOPPED
        try:
            info = FirecrackerAPI(meta["socket"]).describe()
        except EngineError:
            return RUNNING  # the process is up; its API may be busy
        return RUNNING if info.get("state") == "Running" else STOPPED

    def _after_exit(self, meta: dict) -> None:
        meta["pid"] = None
        self._save(meta)
        if meta.get("socket"):
            Path(meta["socket"]).unlink(missing_ok=True)

    def _launch(self, meta: dict) -> None:
        workdir = self._dir(meta["name"])
        firecracker = probes.resolve_binary("TTSTACK_FIRECRACKER_BIN", "firecracker")
        kernel, initrd, disk, seed = meta["kernel"], meta["initrd"], meta["disk"], meta["seed"]
        chroot_root: Path | None = None
        if meta["jailer"]:
            jailer = probes.resolve_binary("TTSTACK_JAILER_BIN", "jailer")
            chroot_root = self.chroot_base / Path(firecracker).name / meta["fc_id"] / "root"
            chroot_root.mkdir(parents=True, exist_ok=True)
            kernel = self._into_chroot(chroot_root, kernel, "vmlinux")
            initrd = self._into_chroot(chroot_root, initrd, "initrd") if initrd else None
            disk = self._into_chroot(chroot_root, disk, "rootfs")
            seed = self._into_chroot(chroot_root, seed, "seed.iso") if seed else None
            argv = [jailer, "--id", meta["fc_id"], "--exec-file", firecracker,
                    "--uid", str(self.jailer_uid), "--gid", str(self.jailer_gid),
                    "--chroot-base-dir", str(self.chroot_base),
                    "--", "--api-sock", "/run/firecracker.socket"]  # inside the chroot
            meta["chroot"] = str(chroot_root)
        sock = self._socket_path(meta["name"], chroot_root)
        if not meta["jailer"]:
            argv = [firecracker, "--api-sock", sock, "--id", meta["fc_id"]]
        Path(sock).unlink(missing_ok=True)  # firecracker refuses to bind over a stale socket
        meta["socket"] = sock
        meta["pid"] = procutil.spawn_detached(argv, workdir / "console.log")
        self._save(meta)
        try:
            self._wait_socket(meta)
            self._configure(meta, kernel, initrd, disk, seed)
        except EngineError:
            procutil.kill_pid(meta["pid"], signal.SIGKILL)
            self._after_exit(meta)
            raise

    def _into_chroot(self, root: Path, source: str, name: str) -> str:
        """Make `source` visible inside the jail as /name: a hard link (or a device node for a zvol)."""
        target = root / name
        target.unlink(missing_ok=True)
        st = os.stat(source)
        if stat.S_ISBLK(st.st_mode):
            os.mknod(target, stat.S_IFBLK | 0o600, st.st_rdev)
        else:
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)  # another filesystem: the kernel/seed are small
        try:
            os.chown(target, self.jailer_uid, self.jailer_gid)
        except PermissionError:
            pass
        return f"/{name}"

    def _wait_socket(self, meta: dict) -> None:
        api = FirecrackerAPI(meta["socket"])

        def answers() -> bool:
            if not procutil.pid_alive(meta["pid"]):
                tail = log_tail(self._dir(meta["name"]) / "console.log")
                raise EngineError(f"firecracker exited before opening its API socket: {tail}")
            if not os.path.exists(meta["socket"]):
                return False
            try:
                api.describe()
            except EngineError:
                return False
            return True

        if not procutil.wait_until(answers, SOCKET_WAIT, interval=0.05):
            raise EngineError(f"firecracker API socket {meta['socket']} did not answer within {SOCKET_WAIT:g} s")

    def _configure(self, meta: dict, kernel: str, initrd: str | None, disk: str, seed: str | None) -> None:
        api = FirecrackerAPI(meta["socket"])
        api.put("/machine-config", {"vcpu_count": meta["cpu"], "mem_size_mib": meta["mem"], "smt": False})
        boot_args = (f"{meta['cmdline']} ip={meta['guest_ip']}::{meta['host_ip']}:255.255.255.252:"
                     f"{meta['hostname'][:63]}:eth0:off")
        boot: dict = {"kernel_image_path": kernel, "boot_args": boot_args}
        if initrd:
            boot["initrd_path"] = initrd
        api.put("/boot-source", boot)
        # With an initrd the init reads the disk itself; without one the kernel mounts it as root (/dev/vda).
        api.put("/drives/rootfs", {"drive_id": "rootfs", "path_on_host": disk,
                                   "is_root_device": not initrd, "is_read_only": False})
        if seed:
            api.put("/drives/seed", {"drive_id": "seed", "path_on_host": seed,
                                     "is_root_device": False, "is_read_only": True})
        api.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": meta["tap"],
                                             "guest_mac": meta["mac"]})
        api.put("/actions", {"action_type": "InstanceStart"})
        state = api.describe().get("state")
        if state != "Running":
            raise EngineError(f"firecracker accepted InstanceStart but reports state {state!r}")

    def _setup_network(self, meta: dict) -> None:
        owner = (self.jailer_uid, self.jailer_gid) if meta["jailer"] else None
        firecracker_net.setup(meta, save=self._save, tap_owner=owner)

    def _teardown_network(self, meta: dict) -> None:
        firecracker_net.teardown(meta)
