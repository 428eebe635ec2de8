"""Honest capability probes shared by the engines and storages.

Every probe answers ``(works, why_not)``. "Works" means: the binary is there, the device is there, and
where it matters a short functional check passed — never "the file exists, so it probably works".

The KVM functional probe boots a 512-byte boot sector under ``qemu-system-x86_64 -accel kvm``; the boot
sector writes a marker to the first serial port and halts. If the marker does not arrive within a few
seconds, KVM does not run guests on this host (on the development machines /dev/kvm exists but a guest
hangs). The same boot sector prints the marker under TCG within milliseconds, which is how the probe
itself was checked. The result is cached for the life of the process.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ttproject import procutil

KVM_MARKER = b"TTKVMOK"
KVM_PROBE_TIMEOUT = float(os.environ.get("TTSTACK_KVM_PROBE_TIMEOUT", "6"))

_kvm_lock = threading.Lock()
_kvm_result: tuple[bool, str] | None = None


def resolve_binary(env_var: str, default_name: str) -> str | None:
    """Absolute path of a tool: the env var (a path or a name looked up on PATH), else `default_name` on PATH."""
    configured = os.environ.get(env_var, "").strip()
    candidate = configured or default_name
    if os.sep in candidate:
        return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    return shutil.which(candidate)


def binary_present(env_var: str, default_name: str) -> tuple[bool, str]:
    path = resolve_binary(env_var, default_name)
    if path:
        return True, ""
    configured = os.environ.get(env_var, "").strip()
    if configured:
        return False, f"{default_name} binary not found: {env_var}={configured} is not an executable"
    return False, f"{default_name} binary not found on PATH (set {env_var})"


def binaries_present(tools) -> tuple[bool, str]:
    """`binary_present` for every (env_var, default_name) in `tools`; the first one missing says why."""
    for env_var, default_name in tools:
        ok, why = binary_present(env_var, default_name)
        if not ok:
            return False, why
    return True, ""


def assumed_or_probed(assumed: bool, note: str, probe) -> tuple[bool, str]:
    """`(True, note)` when the caller assumed what `probe` checks (tests driving doubles), else `probe()`."""
    if assumed:
        return True, note
    return probe()


def device_present(path: str, writable: bool = True) -> tuple[bool, str]:
    if not os.path.exists(path):
        return False, f"{path} does not exist"
    mode = os.R_OK | (os.W_OK if writable else 0)
    if not os.access(path, mode):
        return False, f"{path} is not {'read-writable' if writable else 'readable'} by this process"
    return True, ""


def is_freebsd() -> tuple[bool, str]:
    system = platform.system()
    if system == "FreeBSD":
        return True, ""
    return False, f"needs FreeBSD (this host runs {system or 'an unknown OS'})"


def _boot_sector() -> bytes:
    """Real-mode code: write KVM_MARKER + newline to COM1 (0x3f8), then halt forever."""
    code = bytearray([0xBA, 0xF8, 0x03])  # mov dx, 0x3f8
    for ch in KVM_MARKER + b"\n":
        code += bytes([0xB0, ch, 0xEE])  # mov al, ch ; out dx, al
    code += bytes([0xF4, 0xEB, 0xFD])  # hlt ; jmp back to hlt
    return bytes(code) + b"\0" * (510 - len(code)) + b"\x55\xaa"


def run_boot_sector(accel: str, timeout: float = KVM_PROBE_TIMEOUT) -> tuple[bool, str]:
    """Boot the marker sector with qemu's `accel` ("kvm" or "tcg"); True when the marker came out in time."""
    qemu = resolve_binary("TTSTACK_QEMU_BIN", "qemu-system-x86_64")
    if not qemu:
        return False, "qemu-system-x86_64 not found, cannot run the functional probe"
    with tempfile.TemporaryDirectory(prefix="ttstack-kvmprobe-") as tmp:
        image = Path(tmp) / "boot.img"
        image.write_bytes(_boot_sector())
        argv = [qemu, "-accel", accel, "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
                "-m", "16", "-drive", f"file={image},format=raw,if=floppy", "-boot", "a"]
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        except OSError as exc:
            return False, f"cannot run {qemu}: {exc}"
        output = b""
        deadline = time.monotonic() + timeout
        try:
            os.set_blocking(proc.stdout.fileno(), False)
            while time.monotonic() < deadline and proc.poll() is None:
                chunk = proc.stdout.read()
                if chunk:
                    output += chunk
                    if KVM_MARKER in output:
                        return True, ""
                time.sleep(0.05)
            output += proc.stdout.read() or b""
            if KVM_MARKER in output:
                return True, ""
            if proc.poll() is not None:
                err = (proc.stderr.read() or b"").decode(errors="replace").strip().splitlines()
                return False, f"qemu -accel {accel} exited {proc.returncode}: {err[-1] if err else 'no output'}"
            return False, f"a guest under -accel {accel} printed nothing within {timeout:g} s"
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()


def kvm_works(refresh: bool = False) -> tuple[bool, str]:
    """/dev/kvm present and usable AND a guest really runs under KVM. Cached per process."""
    global _kvm_result
    with _kvm_lock:
        if _kvm_result is not None and not refresh:
            return _kvm_result
        ok, why = device_present("/dev/kvm")
        if not ok:
            result = (False, why)
        else:
            ok, why = run_boot_sector("kvm")
            result = (True, "") if ok else (False, f"/dev/kvm is present but a KVM guest does not run ({why})")
        _kvm_result = result
        return result


def zfs_module_loaded() -> tuple[bool, str]:
    system = platform.system()
    if system == "Linux":
        if os.path.isdir("/sys/module/zfs"):
            return True, ""
        return False, "the zfs kernel module is not loaded (/sys/module/zfs missing)"
    if system == "FreeBSD":
        kldstat = shutil.which("kldstat") or "/sbin/kldstat"
        try:
            done = subprocess.run([kldstat, "-q", "-m", "zfs"], capture_output=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"cannot run kldstat: {exc}"
        return (True, "") if done.returncode == 0 else (False, "the zfs kernel module is not loaded")
    return False, f"ZFS is not supported on {system}"


# ---------------------------------------------------------------------------------------------------------
# Helpers shared by the host-tool drivers (firecracker, bhyve, jail, zvol): run a tool, keep per-guest
# metadata in a run directory, follow detached processes.


def run_tool(argv: list[str], *, error: type[Exception], timeout: float = 60, check: bool = True,
             input_text: str | None = None) -> subprocess.CompletedProcess:
    """Run a host tool (argument list, never a shell); on failure raise `error` naming the tool and its message."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input_text,
                              stdin=None if input_text is not None else subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise error(f"{os.path.basename(argv[0])} not found: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{os.path.basename(argv[0])} did not finish within {timeout:g} s") from exc
    if check and done.returncode != 0:
        raise error(tool_failure(argv, done))
    return done


def tool_failure(argv: list[str], done: subprocess.CompletedProcess) -> str:
    message = (done.stderr or "").strip() or (done.stdout or "").strip() or "no output"
    return f"{os.path.basename(argv[0])} {' '.join(argv[1:3])} failed (exit {done.returncode}): {message}"


def read_json(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        return None


def write_json(path: Path, data: dict) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def default_run_dir(env_var: str, subdir: str) -> Path:
    configured = os.environ.get(env_var, "").strip()
    if configured:
        return Path(configured)
    data_dir = os.environ.get("TTSTACK_DATA_DIR", "").strip()
    if not data_dir:
        try:
            from django.conf import settings

            data_dir = str(settings.DATA_DIR)
        except Exception:  # settings not configured: fall back to the user's data dir
            data_dir = os.path.expanduser("~/.ttstack")
    return Path(data_dir) / subdir


# Detached children started by this process, so they can be reaped (no zombies counted as alive).
_children: dict[int, subprocess.Popen] = {}


def spawn_detached(argv: list[str], log_path: Path, env: dict | None = None, cwd: str | None = None) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=env, cwd=cwd)
    _children[proc.pid] = proc
    return proc.pid


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    return procutil.pid_alive(pid, zombie_is_dead=True)  # a zombie left by an earlier agent process is gone


def wait_pid_exit(pid: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def kill_pid(pid: int | None, sig: int = 9, timeout: float = 10) -> None:
    """Send `sig` to the process (its whole session when it leads one) and wait for it to go."""
    if not pid_alive(pid):
        return
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return
    wait_pid_exit(pid, timeout)


# ---------------------------------------------------------------------------------------------------------
# pf (FreeBSD): one anchor per guest under TTSTACK_PF_ANCHOR (default "ttstack"). pf.conf must hook them in:
#   nat-anchor "ttstack/*"   rdr-anchor "ttstack/*"   anchor "ttstack/*"
# (before the global `nat on $ext_if from <guest subnets> -> ($ext_if)` rule). See docs/engines.md.


def pf_anchor(name: str) -> str:
    return f"{os.environ.get('TTSTACK_PF_ANCHOR', 'ttstack')}/{name}"


def pf_rules(guest_ip: str, port_map: dict, publish_addr: str, deny_outgoing: bool,
             guest_if: str | None) -> list[str]:
    """Translation and filter rules for one guest: rdr publish_addr:host -> guest:port, and for deny_outgoing
    a block of everything the guest starts (replies to published ports match their rdr state and pass)."""
    ext_if = os.environ.get("TTSTACK_PF_EXT_IF", "").strip()
    on = f"on {ext_if} " if ext_if else ""
    rules = []
    for guest_port, host_port in sorted(port_map.items(), key=lambda kv: int(kv[0])):
        rules.append(f"rdr pass {on}inet proto tcp from any to {publish_addr} port {host_port} "
                     f"-> {guest_ip} port {guest_port}")
    if deny_outgoing:
        rules.append(f"no nat inet from {guest_ip} to any")
        via = f"on {guest_if} " if guest_if else ""
        rules.append(f"block drop in quick {via}inet from {guest_ip} to any")
        rules.append(f"block drop out quick on ! lo0 inet from {guest_ip} to any")
    return rules


def pf_load(name: str, rules: list[str], rules_path: Path, error: type[Exception]) -> None:
    pfctl = resolve_binary("TTSTACK_PFCTL_BIN", "pfctl") or "pfctl"
    rules_path.parent.mkdir(parents=True, exist_ok=True)
    rules_path.write_text("".join(f"{rule}\n" for rule in rules))
    run_tool([pfctl, "-a", pf_anchor(name), "-f", str(rules_path)], error=error)


def pf_flush(name: str, error: type[Exception]) -> None:
    pfctl = resolve_binary("TTSTACK_PFCTL_BIN", "pfctl") or "pfctl"
    run_tool([pfctl, "-a", pf_anchor(name), "-F", "all"], error=error, check=False)


def ifconfig(*args: str, error: type[Exception], check: bool = True) -> subprocess.CompletedProcess:
    tool = resolve_binary("TTSTACK_IFCONFIG_BIN", "ifconfig") or "ifconfig"
    return run_tool([tool, *args], error=error, check=check)
