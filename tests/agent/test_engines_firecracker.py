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
from tests.agent.netns import namespaces  # noqa: F401
from tests.agent.test_engines_common import doubles, make_spec, read_jsonl  # noqa: F401
from tests.conftest import require

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


def test_probe_without_binary_says_so(monkeypatch, settings, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    settings.AGENT_FIRECRACKER_BIN = None
    ok, why = FirecrackerEngine(run_dir=tmp_path).probe()
    assert not ok
    assert "firecracker binary not found" in why


def test_probe_with_double_still_checks_kvm(doubles, tmp_path, settings, monkeypatch):  # noqa: F811
    """A firecracker binary alone is not enough: on a host where KVM guests do not run, the engine is not
    offered and says why; where they do run, it is."""
    require("libvirt")  # qemu runs the KVM probe's guest
    # This machine's /dev/kvm takes 5-7 s to run the probe's boot sector: around the default timeout (6 s),
    # so two probes could disagree. 2 s tells such a KVM apart from a working one (well under 1 s).
    settings.AGENT_KVM_PROBE_TIMEOUT = 2.0
    # the process's cached verdict, made with another timeout, is set aside (and put back afterwards)
    monkeypatch.setattr(probes, "_kvm_device", None)
    monkeypatch.setattr(probes, "_kvm_kernel", {})
    ok, why = FirecrackerEngine(run_dir=doubles / "run", use_jailer=False).probe()
    kvm_runs_a_guest, _ = probes.run_boot_sector("kvm") if os.access("/dev/kvm", os.R_OK | os.W_OK) \
        else (False, "")
    if kvm_runs_a_guest:
        assert ok, why
    else:
        assert not ok and "kvm" in why.lower(), why
        with pytest.raises(EngineUnavailable, match="not available on this host.*kvm"):
            FirecrackerEngine(run_dir=doubles / "run", use_jailer=False).create(make_spec(tmp_path, "vm1"))
        assert not (doubles / "run" / "tt-vm1").exists()  # refused before anything was made


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


# The engine's own network code, run inside the namespace that plays the agent host.
APPLY_RULES = """
import json, sys
from agent.engines import firecracker_net
metas = json.loads(sys.argv[2])
for meta in metas:
    getattr(firecracker_net, sys.argv[1])(meta)
print(json.dumps(metas))
"""


def test_deny_outgoing_drops_new_connections_from_the_tap(namespaces):  # noqa: F811
    """The engine's real iptables rules in a network namespace standing for the agent host, with two guests
    (namespaces behind the engine's tap names): the denied guest cannot open a connection to the outside or
    to the host while its published port answers; the open guest reaches both (the control)."""
    host, outside = namespaces("host"), namespaces("out")
    host.veth("tta-uplink", outside, "eth0")
    host.address("tta-uplink", "192.0.2.1/24")
    outside.address("eth0", "192.0.2.2/24")
    host.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    guests, metas = {}, []
    for index, deny in ((1, False), (2, True)):
        guest = namespaces(f"g{index}")
        host_ip, guest_ip = f"172.30.0.{4 * index + 1}", f"172.30.0.{4 * index + 2}"
        meta = {"name": f"tt-vm{index}", "tap": f"tta-tap{index}", "host_ip": host_ip, "guest_ip": guest_ip,
                "port_map": {"8080": 20080 + index}, "publish_addr": "192.0.2.1", "deny_outgoing": deny,
                "jailer": False, "rules": []}
        host.veth(meta["tap"], guest, "eth0")  # the tap exists already: the engine only addresses it
        guest.address("eth0", f"{guest_ip}/30", gateway=host_ip)
        guest.listen("0.0.0.0", 8080, f"guest{index}")
        guests[deny], metas = (guest, meta), [*metas, meta]
    outside.listen("192.0.2.2", 9000, "outside")
    host.listen("0.0.0.0", 9001, "host")
    metas = json.loads(host.python(APPLY_RULES, "setup", json.dumps(metas)).stdout)
    assert all(meta["rules"] for meta in metas)

    (open_guest, open_meta), (denied_guest, denied_meta) = guests[False], guests[True]
    # control: without deny_outgoing the guest reaches the outside (masqueraded) and the host
    assert open_guest.connect("192.0.2.2", 9000) == "outside 192.0.2.1"
    assert open_guest.connect(open_meta["host_ip"], 9001) == f"host {open_meta['guest_ip']}"
    # denied: a new connection from the guest goes nowhere ...
    assert denied_guest.connect("192.0.2.2", 9000) is None
    assert denied_guest.connect(denied_meta["host_ip"], 9001) is None
    # ... while its published port answers from outside (the guest's replies are an established connection)
    assert outside.connect("192.0.2.1", 20082) == "guest2 192.0.2.2"
    assert outside.connect("192.0.2.1", 20081) == "guest1 192.0.2.2"

    host.python(APPLY_RULES, "teardown", json.dumps(metas))
    rules = host.run("iptables", "-S").stdout + host.run("iptables", "-t", "nat", "-S").stdout
    assert "ttstack:" not in rules
    assert host.run("ip", "link", "show", "tta-tap2", check=False).returncode != 0


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


def test_create_refuses_when_probe_fails(doubles, settings, tmp_path):  # noqa: F811
    settings.AGENT_FIRECRACKER_BIN = str(tmp_path / "no-such-firecracker")
    eng = FirecrackerEngine(run_dir=doubles / "run", assume_kvm=True, use_jailer=False)
    with pytest.raises(EngineUnavailable, match="not available on this host"):
        eng.create(make_spec(doubles, "vm1"))
    assert eng.list_guests() == {}


def test_jailer_mode_links_files_into_the_chroot(doubles, settings):  # noqa: F811
    settings.AGENT_JAILER_CHROOT_BASE = doubles / "jail"
    settings.AGENT_JAILER_UID = os.getuid()
    settings.AGENT_JAILER_GID = os.getgid()
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
