"""The test fleet's network: one bridge in the root namespace, a /24 of 10.233.X.0, hosts as namespaces.

Everything global carries the prefix ``ttn-<run>`` (``<run>``: 4 hex digits, one per fleet): the bridge
``ttn-<run>-br``, each host's namespace and root-side veth ``ttn-<run>-<i>``, its cgroup ``/ttn-<run>-<i>`` and
the iptables rule (comment ``ttn-<run>``). A state file ``/run/ttn-netfleet/<run>`` names the process that owns
the run; `sweep()` removes what belongs to runs whose owner is dead (a crashed or killed earlier session).

Only argument lists reach a process; names are checked against NAME before they do.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "ttn-"
STATE_DIR = Path("/run/ttn-netfleet")
NAME = re.compile(r"ttn-[0-9a-f]{4}-[0-9a-z]{1,4}\Z")
RUN = re.compile(r"ttn-([0-9a-f]{4})-")
SUBNETS = "10.233.{}.0/24"  # clear of docker's 172.17.0.0/16 and of this machine's own networks


class FleetError(RuntimeError):
    """Building or tearing down the test fleet failed; the message says which command and why."""


def run(argv: list[str], *, check: bool = True, timeout: float = 30, input: bytes | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise FleetError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace")


def checked(name: str) -> str:
    if not NAME.match(name):
        raise FleetError(f"not a test fleet name: {name!r}")
    return name


# ------------------------------------------------------------------------------------------- cgroups


def _cgroup_mounts() -> list[tuple[str, str, str]]:
    """(fstype, super options, mount point) of every cgroup/cgroup2 mount of this mount namespace."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = (right.split() + ["", "", ""])[:3]
        if fstype in ("cgroup", "cgroup2"):
            mounts.append((fstype, options, left.split()[4]))
    return mounts


def cgroup2_root() -> Path | None:
    """Where the unified (v2) hierarchy is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified (hybrid)."""
    for fstype, _options, point in _cgroup_mounts():
        if fstype == "cgroup2":
            return Path(point)
    return None


def cgroup_layout_args() -> list[str]:
    """`--mount` arguments for tests.netfleet.inhost re-creating this machine's cgroup mounts inside a
    namespace (`ip netns exec` remounts /sys and so hides them; dockerd needs them)."""
    args = []
    base = Path("/sys/fs/cgroup")
    if base.is_mount() and all(Path(p) != base for _t, _o, p in _cgroup_mounts()):
        args += ["--mount", "tmpfs", "mode=755", str(base)]  # hybrid/v1 layout: a tmpfs holds the hierarchies
    for fstype, options, point in _cgroup_mounts():
        opts = [o for o in options.split(",") if o not in ("rw", "ro")]
        if fstype == "cgroup" and all(o.startswith("name=") or o == "xattr" for o in opts):
            opts.insert(0, "none")  # a named hierarchy without controllers
        args += ["--mount", fstype, ",".join(opts) or "defaults", point]
    return args


def cgroup_dirs(name: str) -> list[Path]:
    """The directories of cgroup `name` in every hierarchy (deepest first when removing)."""
    return [Path(point) / checked(name) for _t, _o, point in _cgroup_mounts()]


def cgroup_kill(path: Path, timeout: float = 10):
    """SIGKILL every process of a v2 cgroup and its children, and wait until they are gone."""
    if not path.exists():
        return
    (path / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(p.read_text().strip() for p in path.rglob("cgroup.procs")):
            return
        time.sleep(0.05)
    raise FleetError(f"processes of {path} still alive after SIGKILL")


def cgroup_remove(name: str):
    """Kill what is left in cgroup `name` and remove its directories from every hierarchy."""
    root = cgroup2_root()
    if root is not None:
        cgroup_kill(root / checked(name))
    for top in cgroup_dirs(name):
        if not top.exists():
            continue
        for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            _rmdir_when_empty(sub)
        _rmdir_when_empty(top)


def _rmdir_when_empty(path: Path, timeout: float = 10):
    """rmdir of a cgroup whose killed processes the kernel may still be releasing (EBUSY for a moment,
    seen after killing a frozen agent)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return path.rmdir()
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# ------------------------------------------------------------------------------------------- network


def _taken_subnets() -> set[str]:
    taken = set()
    for line in run(["ip", "-4", "-o", "addr", "show"]).splitlines():
        for word in line.split():
            if "/" in word and word[0].isdigit():
                taken.add(str(ipaddress.ip_interface(word).network))
    taken |= {line.split()[0] for line in run(["ip", "-4", "route", "show"]).splitlines() if line}
    return taken


def _owner_alive(run_id: str) -> bool:
    try:
        pid, start = (STATE_DIR / run_id).read_text().split()
        return _start_time(int(pid)) == start
    except (FileNotFoundError, ValueError):
        return False


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


@dataclass
class Network:
    """The bridge all hosts hang on; the root namespace reaches every host at its own address."""

    run_id: str
    subnet: ipaddress.IPv4Network
    hosts: int = 0
    rules: list[list[str]] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return checked(f"{PREFIX}{self.run_id}-br")

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def host_addr(self, index: int) -> str:
        return str(self.subnet.network_address + 10 + index)

    def host_name(self, index: int) -> str:
        return checked(f"{PREFIX}{self.run_id}-{index}")

    @classmethod
    def create(cls) -> Network:
        STATE_DIR.mkdir(mode=0o700, exist_ok=True)
        run_id = secrets.token_hex(2)
        me = f"{os.getpid()} {_start_time(os.getpid())}\n"
        with open(STATE_DIR / ".lock", "w") as lock:  # one allocation at a time across test sessions
            fcntl.flock(lock, fcntl.LOCK_EX)
            (STATE_DIR / run_id).write_text(me)  # before anything exists, so a crash leaves it sweepable
            taken = _taken_subnets()
            subnet = next((ipaddress.ip_network(SUBNETS.format(x)) for x in range(1, 255)
                           if SUBNETS.format(x) not in taken), None)
            if subnet is None:
                raise FleetError("no free 10.233.X.0/24 left for a test fleet")
            net = cls(run_id, subnet)
            run(["ip", "link", "add", net.bridge, "type", "bridge"])
            run(["ip", "addr", "add", f"{net.gateway}/{subnet.prefixlen}", "dev", net.bridge])
            run(["ip", "link", "set", net.bridge, "up"])
        net._allow_forwarding()
        return net

    def _allow_forwarding(self):
        """The main dockerd sets FORWARD's policy to DROP and br_netfilter sends bridged frames through it:
        let host-to-host traffic of this subnet (and only it) pass, first in DOCKER-USER when it exists."""
        chain = "DOCKER-USER" if run(["iptables", "-w", "-S", "DOCKER-USER"], check=False) else "FORWARD"
        rule = [chain, "-s", str(self.subnet), "-d", str(self.subnet), "-m", "comment", "--comment",
                f"{PREFIX}{self.run_id}", "-j", "ACCEPT"]
        run(["iptables", "-w", "-I", *rule])
        self.rules.append(rule)

    def destroy(self):
        for rule in self.rules:
            run(["iptables", "-w", "-D", *rule], check=False)
        run(["ip", "link", "del", self.bridge], check=False)
        (STATE_DIR / self.run_id).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- sweep


def _kill_namespace(ns: str):
    """SIGKILL every process of namespace `ns` (those not in a test cgroup: a crash mid-start)."""
    for pid in run(["ip", "netns", "pids", checked(ns)], check=False).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def sweep() -> list[str]:
    """Remove namespaces, links, cgroups, iptables rules and state of test fleets whose owner is dead.
    Returns what was removed (for the log)."""
    removed = []
    names = set(run(["ip", "netns", "list"], check=False).split()) | {
        line.split(":")[1].strip().split("@")[0] for line in run(["ip", "-o", "link", "show"]).splitlines()}
    root = cgroup2_root()
    if root is not None:
        names |= {p.name for p in root.glob(f"{PREFIX}*")}
    runs = {m.group(1) for name in names if (m := RUN.match(name))}
    if STATE_DIR.exists():
        runs |= {p.name for p in STATE_DIR.iterdir() if re.fullmatch(r"[0-9a-f]{4}", p.name)}
    for run_id in sorted(r for r in runs if not _owner_alive(r)):
        mine = sorted(n for n in names if n.startswith(f"{PREFIX}{run_id}-") and NAME.match(n))
        for name in mine:
            cgroup_remove(name)
            if name in run(["ip", "netns", "list"], check=False).split():
                _kill_namespace(name)
                run(["ip", "netns", "del", name], check=False)
            run(["ip", "link", "del", name], check=False)
        for chain in ("DOCKER-USER", "FORWARD"):
            for line in run(["iptables", "-w", "-S", chain], check=False).splitlines():
                if f"--comment {PREFIX}{run_id}" in line:
                    run(["iptables", "-w", "-D", *line.split()[1:]], check=False)
        shutil.rmtree(STATE_DIR / f"{run_id}.d", ignore_errors=True)
        (STATE_DIR / run_id).unlink(missing_ok=True)
        removed.append(f"run {run_id}: {', '.join(mine) or 'state only'}")
    return removed
