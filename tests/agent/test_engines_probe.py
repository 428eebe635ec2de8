"""Acceptance (issue 7): engines this host lacks are reported with their reason, and refused with 422.

Runs a real `ttstack agent`. On these Linux machines firecracker (no binary / KVM guests hang), bhyve and jail
(not FreeBSD) must be absent from /api/info with a reason each, and a firecracker create must answer 422
naming the engine and the reason, leaving no VM record, directory or port behind.
"""

from __future__ import annotations

import platform

import pytest

from agent.engines import probes
from agent.engines.bhyve import BhyveEngine
from agent.engines.firecracker import FirecrackerEngine
from agent.engines.jail import JailEngine
from tests.conftest import require

pytestmark = pytest.mark.timeout(180)

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6ZbZUSsfLyrj6vVwTJlvbZdWQW7Qw8v2Y8ZL0VZ1UF t@x"


def test_probe_reasons_on_this_host(tmp_path):
    for engine in (FirecrackerEngine(run_dir=tmp_path), BhyveEngine(run_dir=tmp_path), JailEngine(run_dir=tmp_path)):
        ok, why = engine.probe()
        if ok:
            continue  # a host where the engine really works (realhw)
        assert why, f"{engine.name} gives no reason"
    if platform.system() != "FreeBSD":
        assert BhyveEngine(run_dir=tmp_path).probe() == (False, f"bhyve needs FreeBSD (this host runs "
                                                                 f"{platform.system()})")


def test_kvm_probe_mechanism_works_under_tcg():
    """The boot sector the KVM probe uses really prints its marker (checked under TCG, which works here)."""
    require("libvirt")  # QEMU comes with it; under CI a missing one is a failure
    assert probes.resolve_binary("TTSTACK_QEMU_BIN", "qemu-system-x86_64"), "qemu-system-x86_64 is not installed"
    ok, why = probes.run_boot_sector("tcg", timeout=20)
    assert ok, why


def test_agent_reports_and_refuses_missing_engines(role_server, tmp_path):
    fc_ok, fc_why = FirecrackerEngine(run_dir=tmp_path).probe()
    if fc_ok:
        pytest.skip("firecracker works on this host: nothing to refuse")
    agent = role_server("agent", env={"TTSTACK_STORAGE": "file", "TTSTACK_IMAGE_DIR": str(tmp_path / "images")})
    with agent.client() as client:
        info = client.get("/api/info")
        assert info.status_code == 200, info.text
        body = info.json()
        for name in ("firecracker", "bhyve", "jail"):
            if name == "firecracker" or platform.system() != "FreeBSD":
                assert name not in body["engines"]
                assert body["engines_unavailable"][name], f"no reason given for {name}"
        assert "firecracker" in body["engines_unavailable"]["firecracker"] or \
            "kvm" in body["engines_unavailable"]["firecracker"].lower()

        before = client.get("/api/vms").json()
        resp = client.post("/api/vms", json={"id": "fc-refused", "image": "tiny", "engine": "firecracker",
                                             "ssh_keys": [SSH_KEY]})
        assert resp.status_code == 422, resp.text
        detail = resp.json()["detail"]
        assert "firecracker" in detail
        assert body["engines_unavailable"]["firecracker"] in detail
        assert client.get("/api/vms/fc-refused").status_code == 404
        assert client.get("/api/vms").json() == before
    assert not (agent.data_dir / "vms" / "fc-refused").exists()
    assert not list(agent.data_dir.rglob("*fc-refused*"))
