"""The tiny guest image, the cloud-init seed and the qemu engine, for real: build, boot under libvirt, SSH in.

Needs libvirtd (`virtlogd -d; libvirtd -d`) and the Debian packages qemu-system-x86, qemu-utils,
busybox-static, dropbear-bin, genisoimage, openssh-client, cpio, kmod. The kernel package is downloaded
once with `apt-get download` into the build cache (TTSTACK_CACHE_DIR, see docs/images.md).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from agent.cloudinit import build_seed, meta_data, user_data, validate_ssh_key
from agent.engines.base import MISSING, RUNNING, STOPPED, EngineError, GuestSpec, Image
from agent.engines.qemu import QemuEngine, boot_kernel, kvm_works, netdev_arg
from agent.imagebuild.tiny import SCRIPTS, build_tiny
from tests.conftest import LIBVIRT_URI, free_port, require

SSH_WAIT = 120  # seconds; a TCG boot under load is slow, ~10-20 s is usual
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"]


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def workroot():
    # Not pytest's tmp_path: qemu runs as libvirt-qemu and must be able to traverse to the VM files.
    root = Path(tempfile.mkdtemp(prefix="ttstack-tiny-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny(workroot):
    lines: list[str] = []
    path = build_tiny(workroot / "images", log=lines.append)
    assert any("built" in line for line in lines), lines
    return path


@pytest.fixture(scope="module")
def ssh_key(workroot):
    key = workroot / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tiny-test", "-f", str(key)], check=True)
    return key


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_of(path: Path) -> Image:
    meta = json.loads((path / "image.json").read_text())
    return Image(name=path.name, engine_kind="vm", disk=path / meta["disk"], disk_format=meta["format"],
                 kernel=path / meta["kernel"], initrd=path / meta["initrd"], cmdline=meta["cmdline"])


@pytest.fixture
def vms(tiny, workroot, ssh_key):
    """Factory making VM specs (overlay disk + seed); every domain and file made is removed afterwards."""
    require("libvirt")
    engine = QemuEngine(uri=LIBVIRT_URI, host_id=f"test-{uuid.uuid4().hex[:8]}")
    made: list[GuestSpec] = []

    def make(deny_outgoing: bool = False, ports: dict[int, int] | None = None) -> GuestSpec:
        vm_id = f"tiny{uuid.uuid4().hex[:8]}"
        vmdir = workroot / "vms" / vm_id
        vmdir.mkdir(parents=True)
        vmdir.parent.chmod(0o755)
        vmdir.chmod(0o755)
        image = image_of(tiny)
        overlay = vmdir / "disk.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.disk),
                        str(overlay)], check=True)
        hostname = f"h-{vm_id}"
        seed = build_seed(vmdir / "seed.iso", vm_id, hostname, [ssh_key.with_suffix(".pub").read_text()])
        spec = GuestSpec(vm_id=vm_id, name=f"tt-test-{vm_id}", host_id=engine.host_id, image=image, cpu=1,
                         mem=256, disk=64, port_map={22: free_port(), **(ports or {})}, publish_addr="127.0.0.1",
                         deny_outgoing=deny_outgoing, hostname=hostname, ssh_keys=[], disk_path=overlay,
                         seed_path=seed, workdir=vmdir)
        made.append(spec)
        return spec

    yield engine, make
    for spec in made:
        try:
            engine.destroy(spec)
        finally:
            shutil.rmtree(spec.workdir, ignore_errors=True)
    engine.close()


def ssh(spec: GuestSpec, key: Path, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    args = ["ssh", "-i", str(key), "-p", str(spec.port_map[22]), *SSH_OPTS, "root@127.0.0.1", command]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def wait_ssh(spec: GuestSpec, key: Path, started: float, timeout: float = SSH_WAIT) -> float:
    """Seconds from `started` until `ssh ... true` succeeds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = ssh(spec, key, "true", timeout=20)
            if last.returncode == 0:
                return time.monotonic() - started
        except subprocess.TimeoutExpired as exc:
            last = exc
        time.sleep(0.5)
    console = (spec.workdir / "console.log").read_text(errors="replace")[-3000:]
    raise AssertionError(f"no SSH on port {spec.port_map[22]} within {timeout} s: {last!r}\nconsole:\n{console}")


class Listener:
    """A TCP listener on host loopback recording what connections send: the "outside" for deny_outgoing."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    self.received.append(conn.recv(1024))
                except OSError:
                    self.received.append(b"")

    def close(self):
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def reach_out(spec: GuestSpec, key: Path, port: int, token: str) -> subprocess.CompletedProcess:
    """From the guest, send token to the host's loopback port through slirp's host alias 10.0.2.2."""
    return ssh(spec, key, f"echo {token} | timeout 10 nc -w 5 10.0.2.2 {port}; echo rc=$?", timeout=60)


# ---------------------------------------------------------------------------------------------- unit tests


def cpio_list(path: Path, flags: str) -> str:
    return subprocess.run(["cpio", flags], input=gzip.decompress(path.read_bytes()), capture_output=True,
                          check=True).stdout.decode()


def test_validate_ssh_key_accepts_real_keys(tmp_path):
    for kind in ("ed25519", "rsa", "ecdsa"):
        raw = Path(f"{tmp_path}/k-{kind}.pub")
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "me@laptop", "-f",
                        str(tmp_path / f"k-{kind}")], check=True)
        text = raw.read_text()
        assert text.endswith("\n")
        key = validate_ssh_key(text)
        assert key == text.strip()
        assert validate_ssh_key("  " + key.replace(" ", "   ") + "  ") == key
    blob = key.split()[1]
    assert validate_ssh_key(f"ecdsa-sha2-nistp256 {blob}") == f"ecdsa-sha2-nistp256 {blob}"


@pytest.mark.parametrize("bad, reason", [
    ("", "empty"),
    ("ssh-ed25519", "TYPE BASE64"),
    ("ssh-foo AAAA", "unsupported"),
    ("ssh-ed25519 not*base64", "base64"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIORuoToK37BaGZl35glkfErbYYad98ABk9miHlIsf4sr\nssh-rsa AAAA", "single line"),
    ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIORuoToK37BaGZl35glkfErbYYad98ABk9miHlIsf4sr x", "does not match"),
    ("ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519").decode(), "no key material"),
    ("ssh-ed25519 " + base64.b64encode(b"\x00\x00\x01\x00ssh").decode(), "does not match"),
])
def test_validate_ssh_key_rejects(bad, reason):
    with pytest.raises(ValueError, match=reason):
        validate_ssh_key(bad)


def test_seed_iso(tmp_path, ssh_key):
    pub = ssh_key.with_suffix(".pub").read_text().strip()
    odd = pub.rsplit(" ", 1)[0] + " alice # laptop: work"
    seed = build_seed(tmp_path / "seed.iso", "vm-1", "web-1", [pub, odd])
    data = seed.read_bytes()
    assert data[32768 + 1 : 32768 + 6] == b"CD001"
    assert data[32768 + 40 : 32768 + 72].decode().strip() == "cidata"  # primary volume descriptor's volume id
    files = {}
    for name in ("meta-data", "user-data"):
        files[name] = subprocess.run(["isoinfo", "-R", "-i", str(seed), "-x", f"/{name}"], check=True,
                                     capture_output=True, text=True).stdout
    assert files["meta-data"] == meta_data("vm-1", "web-1") == "instance-id: vm-1\nlocal-hostname: web-1\n"
    ud = files["user-data"]
    assert ud == user_data("web-1", [pub, odd])
    assert ud.startswith("#cloud-config\n") and "disable_root: false" in ud and "users:\n  - default" in ud
    doc = yaml.safe_load(ud)
    assert doc["ssh_authorized_keys"] == [pub, odd] and doc["hostname"] == "web-1"
    assert not list(tmp_path.glob(".seed-*"))  # built atomically, nothing left behind
    with pytest.raises(ValueError):
        build_seed(tmp_path / "bad.iso", "vm-1", "web-1", ["ssh-rsa nope"])
    assert not (tmp_path / "bad.iso").exists()


def test_tiny_image_layout(tiny):
    meta = json.loads((tiny / "image.json").read_text())
    assert {k: meta[k] for k in ("kernel", "initrd", "disk", "format", "os")} == {
        "kernel": "vmlinuz", "initrd": "initrd.img", "disk": "disk.qcow2", "format": "qcow2", "os": "linux"}
    assert meta["cmdline"].startswith("console=ttyS0") and meta["description"]
    assert meta["modules"][:8] == ["virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
                                   "virtio_pci", "failover", "net_failover", "virtio_net"]
    assert {"virtio_blk", "isofs"} <= set(meta["modules"])
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(tiny / "disk.qcow2")],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 64 * 1024 * 1024
    listing = cpio_list(tiny / "initrd.img", "-it").split()
    for path in ("init", "bin/busybox", "bin/sh", "sbin/udhcpc", "usr/sbin/dropbear", "lib64/ld-linux-x86-64.so.2",
                 "lib/x86_64-linux-gnu/libc.so.6", "lib/modules/virtio_net.ko", "etc/passwd", "etc/shells"):
        assert path in listing, path
    owners = {tuple(line.split()[2:4]) for line in cpio_list(tiny / "initrd.img", "-itv").splitlines()}
    assert owners == {("root", "root")}
    # PID 1 is the guest script shipped as package data, byte for byte
    init = subprocess.run(["cpio", "-i", "--to-stdout", "init"], input=gzip.decompress(
        (tiny / "initrd.img").read_bytes()), capture_output=True, check=True).stdout
    assert init == (SCRIPTS / "init.sh").read_bytes()
    # idempotent: a second call returns the same directory untouched
    stamp = (tiny / "initrd.img").stat().st_mtime_ns
    assert build_tiny(tiny.parent, log=lambda _line: None) == tiny
    assert (tiny / "initrd.img").stat().st_mtime_ns == stamp
    assert not [p for p in tiny.parent.iterdir() if p.name.startswith(".")]


def test_modules_load_after_their_dependencies(tiny):
    """Every module the guest loads comes after each module kmod's modinfo says it depends on."""
    from agent.imagebuild.kernel import cloud_kernel

    kernel = cloud_kernel(log=lambda _line: None)
    order = json.loads((tiny / "image.json").read_text())["modules"]
    assert len(order) == len(set(order))
    for position, name in enumerate(order):
        depends = subprocess.run(["modinfo", "-b", str(kernel.tree), "-k", kernel.version, "-F", "depends", name],
                                 check=True, capture_output=True, text=True).stdout.strip()
        for dep in filter(None, depends.split(",")):
            assert dep in order[:position], f"{name} needs {dep} loaded first: {order}"
    assert order.index("virtio_ring") < order.index("virtio") < order.index("virtio_net")


def test_kernel_probe_recognises_a_booting_kernel(tiny):
    """The KVM kernel probe's success test, checked under TCG (which works everywhere)."""
    assert boot_kernel("tcg", tiny / "vmlinuz", timeout=90)


def test_netdev_arg():
    image = Image(name="x", engine_kind="vm")
    spec = GuestSpec(vm_id="v", name="tt-v", host_id="h", image=image, cpu=1, mem=128, disk=64,
                     port_map={22: 20022, 80: 20080}, publish_addr="127.0.0.1", deny_outgoing=True)
    assert netdev_arg(spec) == ("user,id=ttnet0,restrict=on,hostfwd=tcp:127.0.0.1:20022-:22,"
                                "hostfwd=tcp:127.0.0.1:20080-:80")
    spec.deny_outgoing, spec.publish_addr = False, "0.0.0.0"
    assert netdev_arg(spec) == "user,id=ttnet0,hostfwd=tcp::20022-:22,hostfwd=tcp::20080-:80"


# ------------------------------------------------------------------------------------------- real guests


def test_tiny_guest_lifecycle(vms, ssh_key, listener, tiny):
    engine, make = vms
    spec = make()
    base_sum = _sha256(spec.image.disk)
    dtype = engine.domain_type(spec)
    assert dtype in ("kvm", "qemu") and ElementTree.fromstring(engine.domain_xml(spec)).get("type") == dtype
    if dtype == "kvm":
        assert kvm_works(spec.image.kernel) is not False

    started = time.monotonic()
    engine.create(spec)
    boot = wait_ssh(spec, ssh_key, started)
    print(f"\ntiny guest: define to SSH answering in {boot:.1f} s (domain type {dtype})")
    assert engine.state(spec) == RUNNING
    assert engine.list_guests() == {spec.vm_id: RUNNING}

    out = ssh(spec, ssh_key, "hostname")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == spec.hostname
    assert "ttstack-tiny: ready ip=10.0.2.15" in (spec.workdir / "console.log").read_text(errors="replace")

    # Writes land in the overlay, never in the base image.
    out = ssh(spec, ssh_key, "dd if=/dev/urandom of=/dev/vda bs=1M count=8 conv=fsync 2>/dev/null && "
                             "echo ttstack-marker | dd of=/dev/vda bs=512 seek=100 conv=fsync 2>/dev/null && sync "
                             "&& echo ok")
    assert out.stdout.strip() == "ok", out.stderr
    assert _sha256(spec.image.disk) == base_sum
    assert spec.disk_path.stat().st_size > 8 * 1024 * 1024

    # Outgoing traffic is allowed by default: the host's loopback listener is reached through 10.0.2.2.
    token = f"out-{spec.vm_id}"
    out = reach_out(spec, ssh_key, listener.port, token)
    assert "rc=0" in out.stdout, out
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(token.encode() in r for r in listener.received):
        time.sleep(0.1)
    assert any(token.encode() in r for r in listener.received)

    # stop = ACPI power button (the guest's acpid powers off), then start again with the same disk.
    engine.stop(spec, timeout=60)
    assert engine.state(spec) == STOPPED
    assert engine.list_guests() == {spec.vm_id: STOPPED}
    assert "ttstack-tiny: power button" in (spec.workdir / "console.log").read_text(errors="replace")
    engine.stop(spec)  # already stopped: nothing to do

    started = time.monotonic()
    engine.start(spec)
    print(f"tiny guest: start to SSH answering in {wait_ssh(spec, ssh_key, started):.1f} s")
    out = ssh(spec, ssh_key, "dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 14; echo; hostname")
    assert out.stdout.split() == ["ttstack-marker", spec.hostname]

    engine.destroy(spec)
    assert engine.state(spec) == MISSING
    assert engine.list_guests() == {}
    engine.destroy(spec)  # idempotent
    engine.stop(spec)
    assert _sha256(spec.image.disk) == base_sum


def test_tiny_guest_deny_outgoing(vms, ssh_key, listener):
    engine, make = vms
    spec = make(deny_outgoing=True)
    assert "restrict=on" in engine.domain_xml(spec)
    started = time.monotonic()
    engine.create(spec)
    boot = wait_ssh(spec, ssh_key, started)
    print(f"\ntiny guest (deny_outgoing): define to SSH answering in {boot:.1f} s")
    out = ssh(spec, ssh_key, "hostname")
    assert out.stdout.strip() == spec.hostname

    token = f"out-{spec.vm_id}"
    out = reach_out(spec, ssh_key, listener.port, token)
    assert out.returncode == 0 and "rc=" in out.stdout and "rc=0" not in out.stdout, out
    time.sleep(1)
    assert not any(token.encode() in r for r in listener.received)
    # ...while the published port still answers
    assert ssh(spec, ssh_key, "hostname").stdout.strip() == spec.hostname

    engine.destroy(spec)
    assert engine.state(spec) == MISSING


def test_foreign_domain_is_left_alone(vms, tiny):
    """A domain with our name but another host id is neither listed nor touched."""
    engine, make = vms
    spec = make()
    other = QemuEngine(uri=LIBVIRT_URI, host_id="someone-else", accel="tcg")
    other.conn().defineXML(other.domain_xml(spec, domain_type="qemu").replace(
        f"<ttstack:host>{spec.host_id}</ttstack:host>", "<ttstack:host>someone-else</ttstack:host>"))
    try:
        assert spec.vm_id not in engine.list_guests()
        assert other.list_guests() == {spec.vm_id: STOPPED}
        with pytest.raises(EngineError, match="not this agent's"):
            engine.destroy(spec)
    finally:
        other.destroy(spec)
        other.close()
    assert engine.state(spec) == MISSING
