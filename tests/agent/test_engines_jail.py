"""The jail engine against tests/doubles/{jail,jls,ifconfig,pfctl}; FreeBSD is `realhw`."""

from __future__ import annotations

import os
import platform
import stat
import subprocess
from pathlib import Path

import pytest

from agent.engines.base import MISSING, RUNNING, STOPPED, EngineError, EngineUnavailable, Image
from agent.engines.hosttool import read_json
from agent.engines.jail import JailEngine
from tests.agent.test_engines_common import doubles, make_spec, read_jsonl  # noqa: F401

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def templates(doubles):  # noqa: F811
    base = doubles / "templates" / "freebsd-base"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "rc").write_text("#!/bin/sh\n")
    (base / "bin").mkdir()
    (base / "bin" / "sh-link").symlink_to("/bin/sh")
    return doubles / "templates"


@pytest.fixture
def engine(doubles, templates):  # noqa: F811
    eng = JailEngine(run_dir=doubles / "run", assume_freebsd=True, template_dir=templates,
                     root_dir=doubles / "jails")
    yield eng
    for vm_id in list(eng.list_guests()):
        eng.destroy(jail_spec(doubles, vm_id))


def jail_spec(tmp: Path, vm_id: str, **kwargs):
    spec = make_spec(tmp, vm_id, engine_kind="jail", image_disk=tmp / "templates" / "freebsd-base", **kwargs)
    spec.disk_path = spec.seed_path = None  # jails get neither
    return spec


def jail_state(state: Path, name: str) -> dict | None:
    return read_json(state / "state" / "jails" / f"{name}.json")


def anchor(state: Path, name: str) -> list[str]:
    path = state / "state" / "pf" / f"ttstack__{name}.rules"
    return path.read_text().splitlines() if path.exists() else []


def test_probe_here_says_not_freebsd(doubles):  # noqa: F811
    ok, why = JailEngine(run_dir=doubles / "run").probe()
    if platform.system() != "FreeBSD":
        assert not ok and why == f"jail needs FreeBSD (this host runs {platform.system()})"


def test_probe_with_assumption_checks_tools(engine, settings, tmp_path):
    ok, why = engine.probe()
    assert ok and "assumed" in why
    settings.AGENT_JLS_BIN = str(tmp_path / "nope")
    ok, why = engine.probe()
    assert not ok and "jls binary not found" in why


def test_images_are_template_trees(engine):
    assert [(i.name, i.engine_kind) for i in engine.images()] == [("freebsd-base", "jail")]


def test_create_copies_root_writes_keys_and_starts(engine, doubles):  # noqa: F811
    spec = jail_spec(doubles, "j1", ports={22: 20322, 8080: 20380})
    engine.create(spec)
    assert engine.state(spec) == RUNNING
    root = doubles / "jails" / spec.name
    assert (root / "etc" / "rc").exists() and (root / "bin" / "sh-link").is_symlink()
    auth = root / "root" / ".ssh" / "authorized_keys"
    assert auth.read_text() == spec.ssh_keys[0] + "\n"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert stat.S_IMODE(auth.parent.stat().st_mode) == 0o700
    assert (root / "etc" / "rc.conf.d" / "sshd").read_text() == 'sshd_enable="YES"\n'
    params = jail_state(doubles, spec.name)["params"]
    assert params == {"name": spec.name, "path": str(root), "host.hostname": "j1",
                      "ip4.addr": "lo1|10.78.0.10/32", "mount.devfs": True, "devfs_ruleset": "4",
                      "allow.raw_sockets": "0", "exec.clean": True, "exec.start": "/bin/sh /etc/rc",
                      "exec.stop": "/bin/sh /etc/rc.shutdown jail", "stop.timeout": "30", "persist": True}
    lo1 = read_json(doubles / "state" / "ifconfig" / "lo1.json")
    assert lo1["up"] and lo1["addrs"] == ["10.78.0.10/32"]
    assert anchor(doubles, spec.name) == [
        "rdr pass inet proto tcp from any to 127.0.0.1 port 20322 -> 10.78.0.10 port 22",
        "rdr pass inet proto tcp from any to 127.0.0.1 port 20380 -> 10.78.0.10 port 8080"]
    assert engine.ip(spec) == "10.78.0.10"
    assert engine.list_guests() == {"j1": RUNNING}
    engine.create(spec)  # idempotent
    assert engine.list_guests() == {"j1": RUNNING}


def test_deny_outgoing(engine, doubles):  # noqa: F811
    spec = jail_spec(doubles, "j2", ports={22: 20422}, deny_outgoing=True)
    engine.create(spec)
    assert anchor(doubles, spec.name)[1:] == ["no nat inet from 10.78.0.10 to any",
                                              "block drop in quick inet from 10.78.0.10 to any",
                                              "block drop out quick on ! lo0 inet from 10.78.0.10 to any"]


def test_stop_runs_exec_stop_and_start_recreates(engine, doubles):  # noqa: F811
    spec = jail_spec(doubles, "j1")
    engine.create(spec)
    engine.stop(spec, timeout=12)
    assert engine.state(spec) == STOPPED
    removed = read_jsonl(doubles / "state" / "jails" / "removed.jsonl")
    assert removed == [{"name": spec.name, "exec.stop": "/bin/sh /etc/rc.shutdown jail", "stop.timeout": "12"}]
    assert read_json(doubles / "state" / "ifconfig" / "lo1.json")["addrs"] == []
    assert (doubles / "jails" / spec.name / "root" / ".ssh").is_dir()  # the root stays while stopped
    engine.stop(spec)  # already stopped
    engine.start(spec)
    assert engine.state(spec) == RUNNING
    engine.start(spec)


def test_destroy_removes_root_and_rules(engine, doubles):  # noqa: F811
    spec = jail_spec(doubles, "j1")
    engine.create(spec)
    engine.destroy(spec)
    assert engine.state(spec) == MISSING
    assert not (doubles / "jails" / spec.name).exists()
    assert jail_state(doubles, spec.name) is None and anchor(doubles, spec.name) == []
    engine.destroy(spec)
    assert engine.list_guests() == {}


def test_template_that_is_not_a_root_is_refused(engine, doubles):  # noqa: F811
    spec = jail_spec(doubles, "j1")
    object.__setattr__(spec, "image", Image(name="empty", engine_kind="jail", disk=doubles / "nowhere"))
    with pytest.raises(EngineError, match="not a root tree"):
        engine.create(spec)
    assert engine.list_guests() == {}


def test_jail_c_failure_is_reported_and_cleanable(engine, doubles):  # noqa: F811
    spec = jail_spec(doubles, "j1")
    root = doubles / "elsewhere"
    root.mkdir()
    done = subprocess.run(["jail", "-c", f"name={spec.name}", f"path={root}", "persist"], capture_output=True,
                          text=True)
    assert done.returncode == 0
    with pytest.raises(EngineError, match='already exists'):
        JailEngine(run_dir=doubles / "run2", assume_freebsd=True, root_dir=doubles / "jails2").create(spec)
    subprocess.run(["jail", "-r", spec.name], check=True, capture_output=True)


def test_create_refuses_without_freebsd(doubles, templates):  # noqa: F811
    if platform.system() == "FreeBSD":
        pytest.skip("this host is FreeBSD")
    eng = JailEngine(run_dir=doubles / "run", template_dir=templates, root_dir=doubles / "jails")
    with pytest.raises(EngineUnavailable, match="needs FreeBSD"):
        eng.create(jail_spec(doubles, "j1"))
    assert not (doubles / "jails").exists()


def test_start_unknown(engine, doubles):  # noqa: F811
    with pytest.raises(EngineError, match="does not exist"):
        engine.start(jail_spec(doubles, "nope"))


def test_double_messages(doubles):  # noqa: F811
    done = subprocess.run(["jls", "-j", "ghost", "jid"], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.strip() == 'jls: jail "ghost" not found'
    done = subprocess.run(["jail", "-c", "name=x", "path=/", "bogus=1"], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.strip() == "jail: unknown parameter: bogus"


@pytest.mark.realhw
def test_real_jail(tmp_path):
    ok, why = JailEngine(run_dir=tmp_path / "run").probe()
    if not ok:
        pytest.skip(f"needs FreeBSD with jail(8) and pf: {why}")
    template = os.environ.get("TTSTACK_TEST_JAIL_TEMPLATE")
    if not template:
        pytest.skip("set TTSTACK_TEST_JAIL_TEMPLATE to an extracted base.txz to run it")
    eng = JailEngine(run_dir=tmp_path / "run", root_dir=tmp_path / "jails")
    spec = make_spec(tmp_path, "realj", engine_kind="jail", image_disk=Path(template), ports={})
    try:
        eng.create(spec)
        assert eng.state(spec) == RUNNING
        eng.stop(spec)
        assert eng.state(spec) == STOPPED
    finally:
        eng.destroy(spec)
    assert eng.state(spec) == MISSING
