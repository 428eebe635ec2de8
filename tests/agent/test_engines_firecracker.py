"""The firecracker engine against tests/doubles/{firecracker,jailer,ip,iptables}; the real thing is `realhw`."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from agent import procutil
from agent.engines import probes
from agent.engines.base import MISSING, RUNNING, STOPPED, EngineError, EngineUnavailable
from agent.engines.firecracker import FirecrackerEngine
from tests.agent.test_engines_common import doubles, make_spec, read_jsonl  # noqa: F401

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def engine(doubles):  # noqa: F811
    eng = FirecrackerEngine(run_dir=doubles / "run", assume_kvm=True, use_jailer=False)
    yield eng
    for vm_id in list(eng.list_guests()):
        eng.destroy(make_spec(doubles / "specs", vm_id))


def requests(state: Path) -> list[dict]:
    return read_jsonl(state / "state" / "firecracker" / "requests.jsonl")


def iptables(state: Path) -> dict:
    path = state / "state" / "iptables.json"
    return json.loads(path.read_text()) if path.exists() else {}


def links(state: Path) -> list[str]:
    path = state / "state" / "ip" / "links"
    return sorted(os.listdir(path)) if path.exists() else []


def test_probe_without_binary_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.delenv("TTSTACK_FIRECRACKER_BIN", raising=False)
    ok, why = FirecrackerEngine(run_dir=tmp_path).probe()
    assert not ok
    assert "firecracker binary not found" in why


def test_probe_with_double_still_checks_kvm(doubles):  # noqa: F811
    """A firecracker binary alone is not enough: the KVM functional probe decides (honestly)."""
    ok, why = FirecrackerEngine(run_dir=doubles / "run", use_jailer=False).probe()
    assert (ok, why) == probes.kvm_works()
    if not ok:
        assert "kvm" in why.lower()


def test_assume_kvm_is_reported_as_assumed(engine):
    ok, why = engine.probe()
    assert ok and "assumed" in why


def test_create_configures_through_the_api(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "vm1")
    engine.create(spec)
    assert engine.state(spec) == RUNNING
    calls = [(r["method"], r["path"], r["status"]) for r in requests(doubles) if r["method"] == "PUT"]
    assert calls == [("PUT", "/machine-config", 204), ("PUT", "/boot-source", 204),
                     ("PUT", "/drives/rootfs", 204), ("PUT", "/drives/seed", 204),
                     ("PUT", "/network-interfaces/eth0", 204), ("PUT", "/actions", 204)]
    bodies = {r["path"]: r["body"] for r in requests(doubles) if r["method"] == "PUT"}
    assert bodies["/machine-config"] == {"vcpu_count": 2, "mem_size_mib": 256, "smt": False}
    assert bodies["/boot-source"]["kernel_image_path"] == str(spec.image.kernel)
    meta = json.loads((doubles / "run" / spec.name / "meta.json").read_text())
    assert f"ip={meta['guest_ip']}::{meta['host_ip']}:255.255.255.252:vm1:eth0:off" in \
        bodies["/boot-source"]["boot_args"]
    assert bodies["/drives/rootfs"] == {"drive_id": "rootfs", "path_on_host": str(spec.disk_path),
                                        "is_root_device": True, "is_read_only": False}
    assert bodies["/drives/seed"]["is_read_only"] is True
    assert bodies["/network-interfaces/eth0"]["host_dev_name"] == meta["tap"]
    assert bodies["/actions"] == {"action_type": "InstanceStart"}
    assert links(doubles) == [meta["tap"]]
    nat = iptables(doubles)["nat"]
    assert ["-d", "127.0.0.1", "-p", "tcp", "--dport", "20022", "-j", "DNAT", "--to-destination",
            f"{meta['guest_ip']}:22", "-m", "comment", "--comment", f"ttstack:{spec.name}"] in nat["PREROUTING"]
    assert len(nat["OUTPUT"]) == 2
    assert engine.ip(spec) == meta["guest_ip"]
    assert engine.list_guests() == {"vm1": RUNNING}


def test_create_is_idempotent(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "vm1")
    engine.create(spec)
    pid = json.loads((doubles / "run" / spec.name / "meta.json").read_text())["pid"]
    engine.create(spec)
    assert json.loads((doubles / "run" / spec.name / "meta.json").read_text())["pid"] == pid


def test_initrd_image_boots_disk_as_data_drive(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "vm2", initrd=True)
    engine.create(spec)
    bodies = {r["path"]: r["body"] for r in requests(doubles) if r["method"] == "PUT"}
    assert bodies["/boot-source"]["initrd_path"] == str(spec.image.initrd)
    assert bodies["/drives/rootfs"]["is_root_device"] is False


def test_deny_outgoing_drops_new_connections_from_the_tap(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "vm3", deny_outgoing=True)
    engine.create(spec)
    tap = json.loads((doubles / "run" / spec.name / "meta.json").read_text())["tap"]
    forward = iptables(doubles)["filter"]["FORWARD"]
    drop = ["-i", tap, "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"]
    accept = ["-i", tap, "-j", "ACCEPT"]
    def position(rule):
        return next(i for i, r in enumerate(forward) if r[:len(rule)] == rule)

    assert position(drop) < position(accept)  # the drop is evaluated first
    assert any(r[:len(drop)] == drop for r in iptables(doubles)["filter"]["INPUT"])


def test_stop_sends_ctrl_alt_del_and_start_relaunches(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "vm1")
    engine.create(spec)
    engine.stop(spec, timeout=10)
    assert engine.state(spec) == STOPPED
    assert {"action_type": "SendCtrlAltDel"} in [r["body"] for r in requests(doubles)]
    assert links(doubles)  # the tap and port rules stay while stopped (ports stay reserved)
    before = len(requests(doubles))
    engine.start(spec)
    assert engine.state(spec) == RUNNING
    again = [r["path"] for r in requests(doubles)[before:] if r["method"] == "PUT"]
    assert again[-1] == "/actions" and "/boot-source" in again
    engine.start(spec)  # already running: nothing to do
    assert engine.list_guests() == {"vm1": RUNNING}


def test_stop_kills_a_guest_that_ignores_ctrl_alt_del(engine, doubles, monkeypatch):  # noqa: F811
    monkeypatch.setenv("TTSTACK_DOUBLE_FC_IGNORE_CTRLALTDEL", "1")
    spec = make_spec(doubles, "vm1")
    engine.create(spec)
    pid = json.loads((doubles / "run" / spec.name / "meta.json").read_text())["pid"]
    engine.stop(spec, timeout=1)
    assert not procutil.pid_alive(pid)
    assert engine.state(spec) == STOPPED


def test_destroy_removes_everything_and_is_idempotent(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "vm1", deny_outgoing=True)
    engine.create(spec)
    pid = json.loads((doubles / "run" / spec.name / "meta.json").read_text())["pid"]
    engine.destroy(spec)
    assert engine.state(spec) == MISSING
    assert not procutil.pid_alive(pid)
    assert links(doubles) == []
    assert all(not rules for table in iptables(doubles).values() for rules in table.values())
    assert not (doubles / "run" / spec.name).exists()
    engine.destroy(spec)
    engine.stop(spec)
    assert engine.list_guests() == {}


def test_start_of_unknown_guest_fails(engine, doubles):  # noqa: F811
    with pytest.raises(EngineError, match="does not exist"):
        engine.start(make_spec(doubles, "nope"))


def test_kernel_that_is_not_elf_fails_with_firecrackers_message(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "bad")
    spec.image.kernel.write_bytes(b"MZ not an ELF kernel")
    with pytest.raises(EngineError, match="failed to load ELF kernel image"):
        engine.create(spec)
    assert engine.state(spec) == STOPPED  # the record stays so the agent's cleanup can destroy it
    engine.destroy(spec)
    assert engine.state(spec) == MISSING and links(doubles) == []


def test_missing_kernel_file_is_refused_by_the_api(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "bad")
    spec.image.kernel.unlink()
    with pytest.raises(EngineError, match="The kernel file cannot be opened"):
        engine.create(spec)
    engine.destroy(spec)


def test_qcow2_disk_and_kernelless_image_are_refused_before_side_effects(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "q")
    spec.disk_path.write_bytes(b"QFI\xfb" + b"\0" * 100)
    with pytest.raises(EngineError, match="raw"):
        engine.create(spec)
    with pytest.raises(EngineError, match="no kernel"):
        engine.create(make_spec(doubles, "k", kernel=False))
    assert engine.list_guests() == {} and links(doubles) == []


def test_create_refuses_when_probe_fails(doubles, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("TTSTACK_FIRECRACKER_BIN", str(tmp_path / "no-such-firecracker"))
    eng = FirecrackerEngine(run_dir=doubles / "run", assume_kvm=True, use_jailer=False)
    with pytest.raises(EngineUnavailable, match="not available on this host"):
        eng.create(make_spec(doubles, "vm1"))
    assert eng.list_guests() == {}


def test_jailer_mode_links_files_into_the_chroot(doubles, monkeypatch):  # noqa: F811
    monkeypatch.setenv("TTSTACK_JAILER_CHROOT_BASE", str(doubles / "jail"))
    monkeypatch.setenv("TTSTACK_JAILER_UID", str(os.getuid()))
    monkeypatch.setenv("TTSTACK_JAILER_GID", str(os.getgid()))
    eng = FirecrackerEngine(run_dir=doubles / "run", assume_kvm=True, use_jailer=True)
    spec = make_spec(doubles, "jv1")
    try:
        eng.create(spec)
        assert eng.state(spec) == RUNNING
        root = doubles / "jail" / "firecracker" / "tt-jv1" / "root"
        assert (root / "run" / "firecracker.socket").exists()
        assert (root / "vmlinux").read_bytes() == spec.image.kernel.read_bytes()
        bodies = {r["path"]: r["body"] for r in requests(doubles) if r["method"] == "PUT"}
        assert bodies["/boot-source"]["kernel_image_path"] == "/vmlinux"
        assert bodies["/drives/rootfs"]["path_on_host"] == "/rootfs"
        assert bodies["/drives/seed"]["path_on_host"] == "/seed.iso"
        eng.stop(spec, timeout=10)
        assert eng.state(spec) == STOPPED
        eng.start(spec)
        assert eng.state(spec) == RUNNING
    finally:
        eng.destroy(spec)
    assert not (doubles / "jail" / "firecracker" / "tt-jv1").exists()


# ---- the double's own contract (what the engine relies on) -----------------------------------------------


def test_double_api_rules(doubles):  # noqa: F811
    from agent.engines.firecracker_api import FirecrackerAPI

    sock = str(doubles / "fc.sock")
    pid = procutil.spawn_detached([str(Path(shutil.which("firecracker"))), "--api-sock", sock, "--id", "t1"],
                                doubles / "fc.log")
    try:
        api = FirecrackerAPI(sock)
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert api.describe()["state"] == "Not started"
        status, body = api.request("PUT", "/boot-source", {"boot_args": "x"})
        assert status == 400 and "missing field `kernel_image_path`" in body["fault_message"]
        status, body = api.request("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128, "bogus": 1})
        assert status == 400 and "unknown field `bogus`" in body["fault_message"]
        status, body = api.request("PUT", "/actions", {"action_type": "SendCtrlAltDel"})
        assert status == 400 and "before starting" in body["fault_message"]
        status, body = api.request("PUT", "/actions", {"action_type": "InstanceStart"})
        assert status == 400 and "without kernel configuration" in body["fault_message"]
        status, body = api.request("GET", "/nope")
        assert status == 400 and "Invalid request method and/or path" in body["fault_message"]
        kernel = doubles / "k"
        kernel.write_bytes(b"\x7fELF")
        api.put("/boot-source", {"kernel_image_path": str(kernel)})
        api.put("/actions", {"action_type": "InstanceStart"})
        assert api.describe()["state"] == "Running"
        status, body = api.request("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128})
        assert status == 400 and "after starting" in body["fault_message"]
    finally:
        procutil.kill_pid(pid)


# ---- the real thing -------------------------------------------------------------------------------------


def _real_firecracker_missing() -> str | None:
    ok, why = FirecrackerEngine(run_dir="/nonexistent").probe()
    return None if ok else why


@pytest.mark.realhw
def test_real_firecracker_boots_a_guest(tmp_path):
    why = _real_firecracker_missing()
    if why:
        pytest.skip(f"needs a Linux host with working KVM and firecracker: {why}")
    kernel = os.environ.get("TTSTACK_TEST_FC_KERNEL")
    rootfs = os.environ.get("TTSTACK_TEST_FC_ROOTFS")
    if not (kernel and rootfs):
        pytest.skip("set TTSTACK_TEST_FC_KERNEL (vmlinux) and TTSTACK_TEST_FC_ROOTFS (raw ext4) to run it")
    eng = FirecrackerEngine(run_dir=tmp_path / "run")
    spec = make_spec(tmp_path, "real1", ports={})
    shutil.copy(rootfs, spec.disk_path)
    object.__setattr__(spec.image, "kernel", Path(kernel))
    try:
        eng.create(spec)
        assert eng.state(spec) == RUNNING
        eng.stop(spec, timeout=30)
        assert eng.state(spec) == STOPPED
    finally:
        eng.destroy(spec)
    assert eng.state(spec) == MISSING
