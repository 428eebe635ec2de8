"""bhyve VMs (FreeBSD), with the base system's bhyveload / bhyve / bhyvectl.

Create: a tap joined to a bridge (`ifconfig tap create`, `ifconfig BRIDGE addm TAP`), a pf anchor with the
guest's rdr rules (and the deny_outgoing block), then the guest is loaded and run:
  bhyveload -m MEM -d DISK NAME                                       (FreeBSD guests; default)
  bhyve -c CPU -m MEM -H -A -P -s 0:0,hostbridge -s 1:0,lpc -s 2:0,virtio-net,TAP,mac=MAC
        -s 3:0,virtio-blk,DISK [-s 4:0,ahci-cd,SEED] [-l bootrom,UEFI_FD] -l com1,/dev/nmdm-NAME.1A NAME
An image whose image.json says "loader": "uefi" (Linux and other guests) skips bhyveload and boots the
UEFI firmware (TTSTACK_BHYVE_UEFI) instead. bhyve runs detached; its pid is kept in the run dir.
Stop: SIGTERM to bhyve (an ACPI power-button press), `bhyvectl --force-poweroff --vm=NAME` after the
timeout, then `bhyvectl --destroy --vm=NAME` to free the kernel's VM instance. A guest that reboots makes
bhyve exit 0; the VM is then stopped until started again.

Guest addresses come from TTSTACK_BHYVE_SUBNET (default 10.77.0.0/24, the bridge holds .1); the operator runs
a DHCP server on the bridge (e.g. dnsmasq with --dhcp-hostsfile=TTSTACK_DHCP_HOSTSFILE, where this driver
writes "MAC,IP,HOSTNAME" lines) and a global `nat on $ext_if from 10.77.0.0/24 -> ($ext_if)` in pf.conf.

Environment: TTSTACK_BHYVE_BIN, TTSTACK_BHYVELOAD_BIN, TTSTACK_BHYVECTL_BIN, TTSTACK_IFCONFIG_BIN,
TTSTACK_PFCTL_BIN, TTSTACK_BHYVE_BRIDGE (bridge0), TTSTACK_BHYVE_SUBNET, TTSTACK_BHYVE_UEFI
(/usr/local/share/uefi-firmware/BHYVE_UEFI.fd), TTSTACK_BHYVE_RUN_DIR (DATA_DIR/bhyve), TTSTACK_DHCP_HOSTSFILE,
TTSTACK_PF_ANCHOR (ttstack), TTSTACK_PF_EXT_IF. See docs/engines.md.
"""

from __future__ import annotations

import ipaddress
import os
import signal
from pathlib import Path

from agent import conf, procutil
from agent.engines import freebsd_net, probes
from agent.engines.base import EngineError, GuestSpec
from agent.engines.hosttool import ProcessEngine, default_run_dir, is_qcow2, log_tail, short_hash

TOOLS = (("TTSTACK_BHYVE_BIN", "bhyve"), ("TTSTACK_BHYVELOAD_BIN", "bhyveload"),
         ("TTSTACK_BHYVECTL_BIN", "bhyvectl"), ("TTSTACK_IFCONFIG_BIN", "ifconfig"), ("TTSTACK_PFCTL_BIN", "pfctl"))
BOOT_WAIT = 1.0  # bhyve that exits this fast did not start the guest


def _vm_name(name: str) -> str:
    """bhyve VM names end up in /dev/vmm/NAME; keep them short and plain."""
    return name if len(name) <= 31 and all(c.isalnum() or c in "-_." for c in name) else f"tt{short_hash(name, 16)}"


class BhyveEngine(ProcessEngine):
    name = "bhyve"
    guest_noun = "bhyve guest"

    def __init__(self, run_dir: str | Path | None = None, *, assume_freebsd: bool = False,
                 host_id: str | None = None):
        """`assume_freebsd=True` skips only the OS and /dev/vmm checks (tests driving the doubles on Linux);
        the probe then says so."""
        self.run_dir = Path(run_dir) if run_dir else default_run_dir("TTSTACK_BHYVE_RUN_DIR", "bhyve")
        self.assume_freebsd = assume_freebsd
        self.host_id = host_id
        self.bridge = conf.option("TTSTACK_BHYVE_BRIDGE")
        self.subnet = ipaddress.ip_network(conf.option("TTSTACK_BHYVE_SUBNET"))
        self.uefi = Path(conf.option("TTSTACK_BHYVE_UEFI"))

    # ---- probing -----------------------------------------------------------------------------------------
    def probe(self) -> tuple[bool, str]:
        ok, note = self._probe_freebsd(
            TOOLS, "FreeBSD and vmm.ko not checked: assumed by the caller (assume_freebsd=True)")
        if not ok:
            return False, note
        if not self.assume_freebsd:
            ok, why = probes.device_present("/dev/vmm", writable=False)
            if not ok:
                return False, "vmm.ko is not loaded (/dev/vmm missing; kldload vmm)"
        return True, note

    # ---- Engine interface --------------------------------------------------------------------------------
    def create(self, spec: GuestSpec) -> None:
        self._require()
        if spec.disk_path is None:
            raise EngineError("bhyve needs the VM's disk (storage made none)")
        if is_qcow2(spec.disk_path):
            raise EngineError(f"{spec.disk_path} is qcow2; bhyve's virtio-blk reads raw disks and zvols only "
                              "(use the zvol storage)")
        loader = spec.image.extra.get("loader", "bhyveload")
        if loader not in ("bhyveload", "uefi"):
            raise EngineError(f"image {spec.image.name!r}: unknown loader {loader!r} (bhyveload or uefi)")
        if loader == "uefi" and not os.path.isfile(self.uefi):
            raise EngineError(f"UEFI firmware {self.uefi} not found (pkg install edk2-bhyve, TTSTACK_BHYVE_UEFI)")
        existing = self._meta(spec.name)
        if existing and self._alive(existing):
            return
        meta = existing or self._new_meta(
            spec, vm=_vm_name(spec.name), cpu=spec.cpu, mem=spec.mem, disk=str(spec.disk_path),
            seed=str(spec.seed_path) if spec.seed_path else None, loader=loader,
            guest_ip=self._allocate_ip(spec.name),
            mac="58:9c:fc:" + ":".join(short_hash(spec.name, 6)[i:i + 2] for i in range(0, 6, 2)),
            tap=None, pid=None)
        self._save(meta)  # recorded before any side effect
        self._setup_network(meta)
        self._launch(meta)

    def _restore_network(self, meta: dict) -> None:
        if not meta.get("tap") or freebsd_net.ifconfig(meta["tap"], check=False).returncode:
            meta["tap"] = None
            self._setup_network(meta)

    # ---- stop and destroy (ProcessEngine) ----------------------------------------------------------------
    def _shut_down(self, meta: dict, timeout: float) -> bool:
        try:
            os.kill(meta["pid"], signal.SIGTERM)  # bhyve turns SIGTERM into an ACPI power-button press
        except ProcessLookupError:
            pass
        return procutil.wait_pid_exit(meta["pid"], timeout)

    def _force_off(self, meta: dict) -> None:
        self._bhyvectl("--force-poweroff", meta["vm"], check=False)
        if not procutil.wait_pid_exit(meta["pid"], 5):
            procutil.kill_pid(meta["pid"], signal.SIGKILL)

    # ---- internals ---------------------------------------------------------------------------------------
    def _bhyvectl(self, action: str, vm: str, check: bool = True):
        return procutil.run_tool([self._tool("TTSTACK_BHYVECTL_BIN", "bhyvectl"), action, f"--vm={vm}"],
                               error=EngineError, check=check)

    def _after_exit(self, meta: dict) -> None:
        """Free the kernel's VM instance (memory) left after bhyve exits; no error when there is none."""
        done = self._bhyvectl("--destroy", meta["vm"], check=False)
        if done.returncode != 0 and "could not be opened" not in (done.stderr + done.stdout):
            raise EngineError(procutil.tool_failure(["bhyvectl", "--destroy"], done))
        meta["pid"] = None
        self._save(meta)

    def bhyve_argv(self, meta: dict) -> list[str]:
        argv = [self._tool("TTSTACK_BHYVE_BIN", "bhyve"), "-c", str(meta["cpu"]), "-m", f"{meta['mem']}M",
                "-H", "-A", "-P",
                "-s", "0:0,hostbridge", "-s", "1:0,lpc",
                "-s", f"2:0,virtio-net,{meta['tap']},mac={meta['mac']}",
                "-s", f"3:0,virtio-blk,{meta['disk']}"]
        if meta.get("seed"):
            argv += ["-s", f"4:0,ahci-cd,{meta['seed']}"]
        if meta["loader"] == "uefi":
            argv += ["-l", f"bootrom,{self.uefi}"]
        argv += ["-l", f"com1,/dev/nmdm-{meta['vm']}.1A", meta["vm"]]
        return argv

    def _launch(self, meta: dict) -> None:
        workdir = self._dir(meta["name"])
        if meta["loader"] == "bhyveload":
            self._bhyvectl("--destroy", meta["vm"], check=False)  # a leftover instance would keep old memory
            procutil.run_tool([self._tool("TTSTACK_BHYVELOAD_BIN", "bhyveload"), "-m", f"{meta['mem']}M",
                             "-d", meta["disk"], "-c", f"/dev/nmdm-{meta['vm']}.1A", meta["vm"]],
                            error=EngineError, timeout=120)
        meta["pid"] = procutil.spawn_detached(self.bhyve_argv(meta), workdir / "bhyve.log")
        self._save(meta)
        if procutil.wait_pid_exit(meta["pid"], BOOT_WAIT):
            tail = log_tail(workdir / "bhyve.log")
            self._after_exit(meta)
            raise EngineError(f"bhyve exited at once: {tail}")

    def _setup_network(self, meta: dict) -> None:
        if freebsd_net.ifconfig(self.bridge, check=False).returncode != 0:
            freebsd_net.ifconfig(self.bridge, "create")
            gateway = next(self.subnet.hosts())
            freebsd_net.ifconfig(self.bridge, "inet", f"{gateway}/{self.subnet.prefixlen}", "up")
        if not meta.get("tap"):
            meta["tap"] = freebsd_net.ifconfig("tap", "create").stdout.strip()
            self._save(meta)
        freebsd_net.ifconfig(meta["tap"], "description", f"ttstack:{meta['name']}", "up")
        members = freebsd_net.ifconfig(self.bridge).stdout
        if f"member: {meta['tap']} " not in members:
            freebsd_net.ifconfig(self.bridge, "addm", meta["tap"])
        rules = freebsd_net.pf_rules(meta["guest_ip"], meta["port_map"], meta["publish_addr"], meta["deny_outgoing"],
                                self.bridge)
        freebsd_net.pf_load(meta["name"], rules, self._dir(meta["name"]) / "pf.rules")
        hostsfile = conf.option("TTSTACK_DHCP_HOSTSFILE")
        if hostsfile:
            _replace_line(Path(hostsfile), meta["mac"], f"{meta['mac']},{meta['guest_ip']},{meta['hostname']}")

    def _teardown_network(self, meta: dict) -> None:
        freebsd_net.pf_flush(meta["name"])
        if meta.get("tap"):
            freebsd_net.ifconfig(self.bridge, "deletem", meta["tap"], check=False)
            freebsd_net.ifconfig(meta["tap"], "destroy", check=False)
        hostsfile = conf.option("TTSTACK_DHCP_HOSTSFILE")
        if hostsfile:
            _replace_line(Path(hostsfile), meta["mac"], None)


def _replace_line(path: Path, key: str, line: str | None) -> None:
    try:
        lines = [x for x in path.read_text().splitlines() if not x.startswith(key + ",")]
    except FileNotFoundError:
        lines = []
    if line:
        lines.append(line)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x}\n" for x in lines))
