"""Honest capability probes shared by the engines and storages.

Every probe answers ``(works, why_not)``. "Works" means: the binary is there, the device is there, and
where it matters a short functional check passed -- never "the file exists, so it probably works".

KVM (`kvm_works`) is probed by running a guest: a 512-byte boot sector under ``qemu-system-x86_64 -accel
kvm`` writes a marker to the first serial port, then triple-faults, which makes qemu (``-no-reboot``) exit.
If the marker does not arrive within a few seconds, KVM does not run guests on this host (on the
development machines /dev/kvm exists but a guest hangs). When the caller has a Linux kernel to boot, that
kernel must also get through its init under KVM (BIOS code can run where a 64-bit kernel hangs). Under TCG
the same checks pass within a second, which is how the probe itself is tested. Results are cached for the
life of the process.
"""

from __future__ import annotations

import os
import platform
import select
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from agent import conf

KVM_MARKER = b"TTKVMOK"
# What a Linux kernel prints once it got through its init (without a root fs it panics, then exits).
KERNEL_MARKERS = (b"Kernel panic", b"Run /init")

_kvm_lock = threading.Lock()
_kvm_device: tuple[bool, str] | None = None  # the boot-sector stage
_kvm_kernel: dict[Path, tuple[bool, str]] = {}  # the kernel stage, per kernel


def _configured_tool(env_var: str) -> str:
    """The tool's option (conf.option(env_var)), "" when unset."""
    value = conf.option(env_var)
    return "" if value is None else str(value)


def resolve_binary(env_var: str, default_name: str) -> str | None:
    """Absolute path of a tool: its option (a path or a name looked up on PATH), else `default_name` on PATH."""
    configured = _configured_tool(env_var)
    candidate = configured or default_name
    if os.sep in candidate:
        return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    return shutil.which(candidate)


def binary_present(env_var: str, default_name: str) -> tuple[bool, str]:
    path = resolve_binary(env_var, default_name)
    if path:
        return True, ""
    configured = _configured_tool(env_var)
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


# ------------------------------------------------------------------------------------------------- KVM


def _boot_sector() -> bytes:
    """Real-mode code: write KVM_MARKER + newline to COM1 (0x3f8), then triple-fault (an empty IDT and an
    interrupt), which resets the machine: qemu -no-reboot exits at once."""
    code = bytearray([0xBA, 0xF8, 0x03])  # mov dx, 0x3f8
    for ch in KVM_MARKER + b"\n":
        code += bytes([0xB0, ch, 0xEE])  # mov al, ch ; out dx, al
    idt_at = 0x7C00 + len(code) + 11  # the 6-byte IDT descriptor right after the next 11 bytes of code
    code += bytes([0x2E, 0x0F, 0x01, 0x1E, idt_at & 0xFF, idt_at >> 8])  # lidt cs:[idt] (limit 0)
    code += bytes([0xCD, 0x03, 0xF4, 0xEB, 0xFD])  # int 3 (-> triple fault) ; hlt ; jmp back to hlt
    code += b"\0" * 6  # the IDT descriptor: limit 0, base 0
    return bytes(code) + b"\0" * (510 - len(code)) + b"\x55\xaa"


def _guest_prints(accel: str, args: list[str], markers: tuple[bytes, ...], timeout: float) -> tuple[bool, str]:
    """Run a guest under qemu's `accel` until it exits or `timeout`; True when its serial console printed
    one of `markers`."""
    qemu = resolve_binary("TTSTACK_QEMU_BIN", "qemu-system-x86_64")
    if not qemu:
        return False, "qemu-system-x86_64 not found, cannot run the functional probe"
    argv = [qemu, "-accel", accel, "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot", *args]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return False, f"cannot run {qemu}: {exc}"
    # Read as the guest prints and stop at the marker: a guest that does not exit after it (a KVM that
    # does not reset on the triple fault, as on some nested hosts) would otherwise cost the whole timeout.
    printed = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while not any(marker in printed for marker in markers):
            left = deadline - time.monotonic()
            if left <= 0:
                return False, f"a guest under -accel {accel} printed nothing within {timeout:g} s"
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:  # qemu exited
                    proc.wait(5)
                    err = proc.stderr.read().decode(errors="replace").strip().splitlines()
                    return False, f"qemu -accel {accel} exited {proc.returncode}: {err[-1] if err else 'no output'}"
                printed += chunk
        return True, ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()


def _probe_timeout(timeout: float | None) -> float:
    return conf.option("TTSTACK_KVM_PROBE_TIMEOUT") if timeout is None else timeout


def run_boot_sector(accel: str, timeout: float | None = None) -> tuple[bool, str]:
    """Boot the marker sector with qemu's `accel` ("kvm" or "tcg"); True when the marker came out within
    `timeout` (default: TTSTACK_KVM_PROBE_TIMEOUT)."""
    timeout = _probe_timeout(timeout)
    with tempfile.TemporaryDirectory(prefix="ttstack-kvmprobe-") as tmp:
        image = Path(tmp) / "boot.img"
        image.write_bytes(_boot_sector())
        return _guest_prints(accel, ["-m", "16", "-drive", f"file={image},format=raw,if=floppy", "-boot", "a"],
                             (KVM_MARKER,), timeout)


def boot_kernel(accel: str, kernel: Path, timeout: float | None = None) -> bool:
    """Does `kernel` get through its init (to the "no root fs" panic) under qemu's `accel` within timeout?"""
    ok, _why = _guest_prints(accel, ["-m", "128", "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"],
                             KERNEL_MARKERS, _probe_timeout(timeout))
    return ok


def kvm_works(kernel: Path | None = None, refresh: bool = False) -> tuple[bool, str]:
    """/dev/kvm present and usable AND a guest really runs under KVM (and `kernel`, when given, boots
    under it). Cached per process."""
    global _kvm_device
    with _kvm_lock:
        if refresh:
            _kvm_device = None
            _kvm_kernel.clear()
        if _kvm_device is None:
            ok, why = device_present("/dev/kvm")
            if ok:
                ok, why = run_boot_sector("kvm")
                why = "" if ok else f"/dev/kvm is present but a KVM guest does not run ({why})"
            _kvm_device = (ok, why)
        if not _kvm_device[0] or kernel is None or not Path(kernel).is_file():
            return _kvm_device
        kernel = Path(kernel)
        if kernel not in _kvm_kernel:
            ok = boot_kernel("kvm", kernel)
            _kvm_kernel[kernel] = (ok, "" if ok else f"a boot sector runs under KVM, but kernel {kernel} hangs")
        return _kvm_kernel[kernel]


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
