"""The bhyve engine against tests/doubles/{bhyve,bhyveload,bhyvectl,ifconfig,pfctl}; FreeBSD is `realhw`."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import pytest

from agent import procutil
from agent.engines.base import MISSING, RUNNING, STOPPED, EngineError, EngineUnavailable
from agent.engines.bhyve import BhyveEngine
from agent.engines.hosttool import read_json
from tests.agent.test_engines_common import doubles, make_spec  # noqa: F401

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def engine(doubles):  # noqa: F811
    eng = BhyveEngine(run_dir=doubles / "run", assume_freebsd=True)
    yield eng
    for vm_id in list(eng.list_guests()):
        eng.destroy(make_spec(doubles / "specs", vm_id))


def vmm(state: Path, name: str) -> dict | None:
    return read_json(state / "state" / "vmm" / f"{name}.json")


def iface(state: Path, name: str) -> dict | None:
    return read_json(state / "state" / "ifconfig" / f"{name}.json")


def anchor(state: Path, name: str) -> list[str]:
    path = state / "state" / "pf" / f"ttstack__{name}.rules"
    return path.read_text().splitlines() if path.exists() else []


def meta(state: Path, spec) -> dict:
    return json.loads((state / "run" / spec.name / "meta.json").read_text())


def test_probe_here_says_not_freebsd():
    ok, why = BhyveEngine(run_dir="/nonexistent").probe()
    if platform.system() != "FreeBSD":
        assert not ok and why == f"bhyve needs FreeBSD (this host runs {platform.system()})"


def test_probe_with_doubles_is_still_honest(doubles):  # noqa: F811
    """Doubles on PATH do not make Linux FreeBSD."""
    ok, why = BhyveEngine(run_dir=doubles / "run").probe()
    if platform.system() != "FreeBSD":
        assert not ok and "needs FreeBSD" in why
    ok, why = BhyveEngine(run_dir=doubles / "run", assume_freebsd=True).probe()
    assert ok and "assumed" in why


def test_create_runs_bhyveload_then_bhyve(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "b1", ports={22: 20122, 80: 20180})
    engine.create(spec)
    assert engine.state(spec) == RUNNING
    m = meta(doubles, spec)
    assert m["tap"] == "tap0" and m["guest_ip"] == "10.77.0.10"
    vm = vmm(doubles, m["vm"])
    assert vm["running"] and vm["loader_mem"] == "256M" and vm["disks"] == [str(spec.disk_path)]
    assert vm["argv"] == ["-c", "2", "-m", "256M", "-H", "-A", "-P", "-s", "0:0,hostbridge", "-s", "1:0,lpc",
                          "-s", f"2:0,virtio-net,tap0,mac={m['mac']}", "-s", f"3:0,virtio-blk,{spec.disk_path}",
                          "-s", f"4:0,ahci-cd,{spec.seed_path}", "-l", f"com1,/dev/nmdm-{m['vm']}.1A", m["vm"]]
    assert iface(doubles, "bridge0")["members"] == ["tap0"]
    assert iface(doubles, "bridge0")["addrs"] == ["10.77.0.1/24"]
    assert iface(doubles, "tap0")["up"] and iface(doubles, "tap0")["description"] == f"ttstack:{spec.name}"
    assert anchor(doubles, spec.name) == [
        "rdr pass inet proto tcp from any to 127.0.0.1 port 20122 -> 10.77.0.10 port 22",
        "rdr pass inet proto tcp from any to 127.0.0.1 port 20180 -> 10.77.0.10 port 80"]
    assert engine.ip(spec) == "10.77.0.10"
    assert engine.list_guests() == {"b1": RUNNING}


def test_second_guest_gets_its_own_tap_and_address(engine, doubles):  # noqa: F811
    engine.create(make_spec(doubles, "b1"))
    spec2 = make_spec(doubles, "b2")
    engine.create(spec2)
    assert meta(doubles, spec2)["tap"] == "tap1" and meta(doubles, spec2)["guest_ip"] == "10.77.0.11"
    assert iface(doubles, "bridge0")["members"] == ["tap0", "tap1"]


def test_deny_outgoing_blocks_guest_initiated_traffic(engine, doubles, settings):  # noqa: F811
    settings.AGENT_PF_EXT_IF = "vtnet0"
    spec = make_spec(doubles, "b3", ports={22: 20222}, deny_outgoing=True)
    engine.create(spec)
    assert anchor(doubles, spec.name) == [
        "rdr pass on vtnet0 inet proto tcp from any to 127.0.0.1 port 20222 -> 10.77.0.10 port 22",
        "no nat inet from 10.77.0.10 to any",
        "block drop in quick on bridge0 inet from 10.77.0.10 to any",
        "block drop out quick on ! lo0 inet from 10.77.0.10 to any"]


def test_uefi_loader_skips_bhyveload(engine, doubles, monkeypatch):  # noqa: F811
    firmware = doubles / "BHYVE_UEFI.fd"
    firmware.write_bytes(b"fw")
    monkeypatch.setattr(engine, "uefi", str(firmware))
    spec = make_spec(doubles, "u1")
    spec.image.extra["loader"] = "uefi"
    engine.create(spec)
    vm = vmm(doubles, meta(doubles, spec)["vm"])
    assert "loader_mem" not in vm and ["-l", f"bootrom,{firmware}"] == vm["argv"][-5:-3]


def test_stop_presses_the_power_button_and_start_reloads(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "b1")
    engine.create(spec)
    name = meta(doubles, spec)["vm"]
    engine.stop(spec, timeout=10)
    assert engine.state(spec) == STOPPED
    assert vmm(doubles, name) is None  # bhyvectl --destroy freed the instance
    assert iface(doubles, "tap0") is not None  # network kept while stopped
    engine.start(spec)
    assert engine.state(spec) == RUNNING and vmm(doubles, name)["loaded"]
    engine.start(spec)  # no-op when running


def test_stop_forces_power_off_when_acpi_is_ignored(engine, doubles, monkeypatch):  # noqa: F811
    monkeypatch.setenv("TTSTACK_DOUBLE_BHYVE_IGNORE_ACPI", "1")
    spec = make_spec(doubles, "b1")
    engine.create(spec)
    pid = meta(doubles, spec)["pid"]
    engine.stop(spec, timeout=1)
    assert not procutil.pid_alive(pid) and engine.state(spec) == STOPPED


def test_destroy_removes_everything(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "b1", deny_outgoing=True)
    engine.create(spec)
    name = meta(doubles, spec)["vm"]
    engine.destroy(spec)
    assert engine.state(spec) == MISSING
    assert vmm(doubles, name) is None and iface(doubles, "tap0") is None
    assert iface(doubles, "bridge0")["members"] == []
    assert anchor(doubles, spec.name) == []
    engine.destroy(spec)
    engine.stop(spec)
    assert engine.list_guests() == {}


def test_missing_disk_fails_in_bhyveload(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "b1")
    spec.disk_path.unlink()
    with pytest.raises(EngineError, match="cannot open disk image"):
        engine.create(spec)
    assert engine.state(spec) == STOPPED
    engine.destroy(spec)
    assert iface(doubles, "tap0") is None


def test_bhyve_that_dies_at_start_is_reported(engine, doubles, monkeypatch):  # noqa: F811
    spec = make_spec(doubles, "b1")
    monkeypatch.setenv("TTSTACK_DOUBLE_BHYVE_FAIL", "tt-b1")
    with pytest.raises(EngineError, match="bhyve exited at once: .*vm_run error"):
        engine.create(spec)
    assert engine.state(spec) == STOPPED
    assert vmm(doubles, "tt-b1") is None


def test_qcow2_and_unknown_loader_are_refused(engine, doubles):  # noqa: F811
    spec = make_spec(doubles, "q")
    spec.disk_path.write_bytes(b"QFI\xfb" + b"\0" * 64)
    with pytest.raises(EngineError, match="raw"):
        engine.create(spec)
    spec = make_spec(doubles, "l")
    spec.image.extra["loader"] = "grub"
    with pytest.raises(EngineError, match="unknown loader"):
        engine.create(spec)
    assert engine.list_guests() == {}


def test_create_refuses_without_freebsd(doubles):  # noqa: F811
    eng = BhyveEngine(run_dir=doubles / "run")
    if platform.system() == "FreeBSD":
        pytest.skip("this host is FreeBSD")
    with pytest.raises(EngineUnavailable, match="needs FreeBSD"):
        eng.create(make_spec(doubles, "b1"))
    assert eng.list_guests() == {}


def test_start_unknown_guest(engine, doubles):  # noqa: F811
    with pytest.raises(EngineError, match="does not exist"):
        engine.start(make_spec(doubles, "nope"))


def test_double_rejects_bad_command_lines(doubles):  # noqa: F811
    def bhyve(*args):
        return subprocess.run(["bhyve", *args], capture_output=True, text=True)

    done = bhyve("-s", "0:0,hostbridge", "-s", "0:0,lpc", "vm")
    assert done.returncode == 4 and "pci slot 0:0 already occupied!" in done.stderr
    done = bhyve("-s", "0:0,hostbridge", "-s", "3:0,virtio-blk,/nonexistent", "vm")
    assert done.returncode == 4 and "Could not open backing file" in done.stderr
    done = subprocess.run(["bhyvectl", "--destroy", "--vm=ghost"], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.strip() == \
        "vm_open: ghost could not be opened: No such file or directory"


@pytest.mark.realhw
def test_real_bhyve_guest(tmp_path):
    ok, why = BhyveEngine(run_dir=tmp_path / "run").probe()
    if not ok:
        pytest.skip(f"needs FreeBSD with vmm.ko, bhyve and pf: {why}")
    import os

    disk = os.environ.get("TTSTACK_TEST_BHYVE_DISK")
    if not disk:
        pytest.skip("set TTSTACK_TEST_BHYVE_DISK to a raw FreeBSD disk image to run it")
    eng = BhyveEngine(run_dir=tmp_path / "run")
    spec = make_spec(tmp_path, "real1", ports={})
    spec.disk_path.write_bytes(Path(disk).read_bytes())
    try:
        eng.create(spec)
        assert eng.state(spec) == RUNNING
        eng.stop(spec, timeout=60)
        assert eng.state(spec) == STOPPED
    finally:
        eng.destroy(spec)
    assert eng.state(spec) == MISSING
