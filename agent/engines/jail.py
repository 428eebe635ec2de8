"""FreeBSD jails with jail(8) and jls(8).

Images are root trees under TTSTACK_JAIL_TEMPLATE_DIR (default /usr/local/ttstack/jail-templates), one directory
per image (e.g. an extracted base.txz with sshd), listed by `images()`. A jail's root is a copy of its template
at TTSTACK_JAIL_ROOT_DIR/NAME (default /usr/local/ttstack/jails); the SSH keys are written into it
(/root/.ssh/authorized_keys, mode 600) with sshd enabled in /etc/rc.conf.d/sshd.

The jail runs with the documented command-line form, the same parameters for create and remove:
  jail -c name=NAME path=ROOT host.hostname=HOST ip4.addr=lo1|IP/32 mount.devfs devfs_ruleset=4
          allow.raw_sockets=0 exec.clean exec.start="/bin/sh /etc/rc"
          exec.stop="/bin/sh /etc/rc.shutdown jail" stop.timeout=30 persist
  jail -r name=NAME ... (same parameters: jail(8) runs exec.stop, kills what is left after stop.timeout,
          unmounts devfs and removes the lo1 alias)
State: `jls -j NAME jid` (running) / the root directory (stopped).
Addresses come from TTSTACK_JAIL_SUBNET (10.78.0.0/24) on TTSTACK_JAIL_IF (lo1, created when missing); ports
are pf rdr rules in the anchor ttstack/NAME, and deny_outgoing blocks what the jail starts (see freebsd_net.pf_rules).

Environment: TTSTACK_JAIL_BIN, TTSTACK_JLS_BIN, TTSTACK_IFCONFIG_BIN, TTSTACK_PFCTL_BIN,
TTSTACK_JAIL_TEMPLATE_DIR, TTSTACK_JAIL_ROOT_DIR, TTSTACK_JAIL_RUN_DIR (DATA_DIR/jail), TTSTACK_JAIL_IF,
TTSTACK_JAIL_SUBNET, TTSTACK_PF_ANCHOR, TTSTACK_PF_EXT_IF. See docs/engines.md.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from pathlib import Path

from agent import conf, procutil
from agent.engines import freebsd_net
from agent.engines.base import EngineError, GuestSpec, Image
from agent.engines.hosttool import HostToolEngine, default_run_dir, short_hash

TOOLS = (("TTSTACK_JAIL_BIN", "jail"), ("TTSTACK_JLS_BIN", "jls"), ("TTSTACK_IFCONFIG_BIN", "ifconfig"),
         ("TTSTACK_PFCTL_BIN", "pfctl"))


def _jail_name(name: str) -> str:
    """jail(8) names: dots separate hierarchical jails, so only [A-Za-z0-9_-] is used."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        return name
    return "tt" + short_hash(name, 16)


class JailEngine(HostToolEngine):
    name = "jail"
    image_kind = "jail"  # a root tree, no disk or cloud-init seed: the keys go straight into the jail's root
    ip_key = "ip"

    def __init__(self, run_dir: str | Path | None = None, *, assume_freebsd: bool = False,
                 host_id: str | None = None, template_dir: str | Path | None = None,
                 root_dir: str | Path | None = None):
        """`assume_freebsd=True` skips only the OS check (tests driving the doubles on Linux); the probe says so."""
        self.run_dir = Path(run_dir) if run_dir else default_run_dir("TTSTACK_JAIL_RUN_DIR", "jail")
        self.assume_freebsd = assume_freebsd
        self.host_id = host_id
        self.template_dir = Path(template_dir or conf.option("TTSTACK_JAIL_TEMPLATE_DIR"))
        self.root_dir = Path(root_dir or conf.option("TTSTACK_JAIL_ROOT_DIR"))
        self.interface = conf.option("TTSTACK_JAIL_IF")
        self.subnet = ipaddress.ip_network(conf.option("TTSTACK_JAIL_SUBNET"))

    # ---- probing -----------------------------------------------------------------------------------------
    def probe(self) -> tuple[bool, str]:
        return self._probe_freebsd(TOOLS, "FreeBSD not checked: assumed by the caller (assume_freebsd=True)")

    def _template(self, image: Image) -> Path:
        root = image.extra.get("root") or image.disk or self.template_dir / image.name
        return Path(root)

    # ---- Engine interface --------------------------------------------------------------------------------
    def images(self) -> list[Image]:
        if not self.template_dir.is_dir():
            return []
        found = []
        for entry in sorted(self.template_dir.iterdir()):
            if entry.is_dir() and not entry.name.startswith(".") and (entry / "etc").is_dir():
                found.append(Image(name=entry.name, engine_kind=self.image_kind, disk=entry, disk_format="dir"))
        return found

    def create(self, spec: GuestSpec) -> None:
        self._require()
        template = self._template(spec.image)
        if not (template / "etc").is_dir():
            raise EngineError(f"jail template {template} is not a root tree (no etc/)")
        existing = self._meta(spec.name)
        if existing and self._alive(existing):
            return
        meta = existing or self._new_meta(
            spec, jail=_jail_name(spec.name), root=str(self.root_dir / spec.name), ip=self._allocate_ip(spec.name),
            template=str(template))
        self._save(meta)  # recorded before any side effect
        root = Path(meta["root"])
        if not root.exists():
            self.root_dir.mkdir(parents=True, exist_ok=True)
            partial = root.with_name(root.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(template, partial, symlinks=True)
            os.replace(partial, root)
        self._install_keys(root, spec.ssh_keys, meta["hostname"])
        self._setup_network(meta)
        self._jail("-c", meta, extra=["persist"])

    def start(self, spec: GuestSpec) -> None:
        meta = self._meta_to_start(spec)
        if meta is None:
            return
        self._setup_network(meta)
        self._jail("-c", meta, extra=["persist"])

    def stop(self, spec: GuestSpec, timeout: float = 30) -> None:
        meta = self._meta(spec.name)
        if meta is None or not self._alive(meta):
            return
        self._jail("-r", meta, stop_timeout=timeout)

    def destroy(self, spec: GuestSpec) -> None:
        meta = self._meta(spec.name)
        if meta is None:
            return
        if self._alive(meta):
            self._jail("-r", meta, stop_timeout=5)
        freebsd_net.pf_flush(meta["name"])
        root = Path(meta["root"])
        if root.exists() and not os.path.ismount(root / "dev"):  # never recurse into a mounted devfs
            shutil.rmtree(root, ignore_errors=True)
        elif root.exists():
            raise EngineError(f"{root}/dev is still mounted; not removing the jail's root")
        shutil.rmtree(self._dir(spec.name), ignore_errors=True)

    # ---- internals ---------------------------------------------------------------------------------------
    def _present(self, meta: dict) -> bool:
        return Path(meta["root"]).is_dir()

    def _alive(self, meta: dict) -> bool:
        """The jail runs (jls knows it)."""
        done = procutil.run_tool([self._tool("TTSTACK_JLS_BIN", "jls"), "-j", meta["jail"], "jid"],
                               error=EngineError, check=False)
        return done.returncode == 0

    def params(self, meta: dict, stop_timeout: float = 30) -> list[str]:
        return [f"name={meta['jail']}", f"path={meta['root']}", f"host.hostname={meta['hostname']}",
                f"ip4.addr={self.interface}|{meta['ip']}/32", "mount.devfs", "devfs_ruleset=4",
                "allow.raw_sockets=0", "exec.clean", "exec.start=/bin/sh /etc/rc",
                "exec.stop=/bin/sh /etc/rc.shutdown jail", f"stop.timeout={max(1, int(stop_timeout))}"]

    def _jail(self, action: str, meta: dict, extra: list[str] | None = None, stop_timeout: float = 30) -> None:
        argv = [self._tool("TTSTACK_JAIL_BIN", "jail"), action, *self.params(meta, stop_timeout), *(extra or [])]
        procutil.run_tool(argv, error=EngineError, timeout=stop_timeout + 60)

    def _install_keys(self, root: Path, keys: list[str], hostname: str) -> None:
        ssh_dir = root / "root" / ".ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(ssh_dir, 0o700)
        auth = ssh_dir / "authorized_keys"
        auth.write_text("".join(f"{key.strip()}\n" for key in keys))
        os.chmod(auth, 0o600)
        rc_dir = root / "etc" / "rc.conf.d"
        rc_dir.mkdir(parents=True, exist_ok=True)
        (rc_dir / "sshd").write_text('sshd_enable="YES"\n')
        (rc_dir / "hostname").write_text(f'hostname="{hostname}"\n')

    def _setup_network(self, meta: dict) -> None:
        if freebsd_net.ifconfig(self.interface, check=False).returncode != 0:
            freebsd_net.ifconfig(self.interface, "create")
            freebsd_net.ifconfig(self.interface, "up")
        rules = freebsd_net.pf_rules(meta["ip"], meta["port_map"], meta["publish_addr"], meta["deny_outgoing"], None)
        freebsd_net.pf_load(meta["name"], rules, self._dir(meta["name"]) / "pf.rules")
