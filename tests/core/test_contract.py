"""The API contract of every role, on real `ttstack ROLE` servers (daphne + worker, with credentials):

- a body over the size limit answers 413 and a 100 000-deep JSON document 400, both with a JSON `detail`;
- schemathesis generates requests from the role's own OpenAPI schema (a bounded number per operation, a fixed
  seed) and checks that none answers a 5xx, that every reply matches its documented schema and status.

Operations left out, and why:
- controller `POST /api/hosts` makes the controller call the generated address as an agent; tests talk only
  to 127.0.0.1 and their own servers. (No host is ever registered, so the other host routes answer 404.)
The agent offers docker only (TTSTACK_ENGINES=docker), so a generated create is at most a container of the
local test image, removed at the end; localvm runs the tart double and a fake GitHub.
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.conftest import RoleServer, require
from tests.localvm.conftest import BASE_IMAGE, DOUBLES, TART
from tests.localvm.fake_github import FakeGitHub

API_KEY = "contract-key"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLES = int(os.environ.get("TTSTACK_CONTRACT_EXAMPLES", "15"))
# Every role: no 5xx, every reply as its schema says, every status documented. localvm's schema also describes
# its inputs completely (patterns, ranges), so what it calls valid must be accepted. (The agent cannot be held
# to that here: it offers docker only, and answers 422 for a valid qemu request.)
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"

# A POST route of each role that parses a JSON body.
POST_ROUTE = {"controller": "/api/envs", "agent": "/api/vms", "localvm": "/api/vms/pull"}
# Valid requests may still meet a state that refuses them: 409 (exists, busy) and 422 (an OCI image cannot be
# started; no GitHub token is set, e.g. after a generated request cleared it).
ACCEPTED_REFUSALS = """[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "404", "409", "422"]
"""
RUNS = {
    "localvm": {"checks": CHECKS + ",positive_data_acceptance", "exclude": [], "config": ACCEPTED_REFUSALS},
    "agent": {"checks": CHECKS, "exclude": []},
    "controller": {"checks": CHECKS, "exclude": ["--exclude-operation-id", "api_hosts_create"]},
}


def _child_env(data_dir: Path, extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "TTSTACK_API_KEY", "DJANGO_SETTINGS_MODULE")}
    env.update(TTSTACK_DATA_DIR=str(data_dir), TTSTACK_BIND="127.0.0.1", TTSTACK_PUBLISH_ADDR="127.0.0.1",
               TTSTACK_TOKEN_DIR=str(data_dir / "tartvm-manager"), TTSTACK_WORKERS="1", **extra)
    return env


def _localvm_env(data_dir: Path, github: FakeGitHub) -> dict:
    seed = data_dir / "seed.json"
    seed.write_text(json.dumps({"images": [BASE_IMAGE], "vms": [{"name": "dev", "source": BASE_IMAGE}]}))
    return {"PATH": f"{DOUBLES}:{os.environ.get('PATH', '')}", "TTSTACK_TART_BIN": str(TART),
            "TART_DOUBLE_STATE": str(data_dir / "tart-state"), "TART_DOUBLE_SEED": str(seed),
            "TART_DOUBLE_PULL_STEP": "0.05", "TTSTACK_GITHUB_API": github.url, "TTSTACK_START_POLL": "0.2",
            "TTSTACK_START_WAIT": "2"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """role -> a started RoleServer, made on first use and stopped at the end of the module."""
    started: dict[str, RoleServer] = {}
    github = FakeGitHub(token=None).__enter__()  # any token is good: a catalogue is always there

    def get(role: str) -> RoleServer:
        if role not in started:
            if role == "agent":
                require("docker")
            data_dir = tmp_path_factory.mktemp(f"contract-{role}-")
            extra = {"agent": {"TTSTACK_ENGINES": "docker", "TTSTACK_STOP_TIMEOUT": "2"},
                     "localvm": _localvm_env(data_dir, github), "controller": {}}[role]
            server = RoleServer(role, data_dir, _child_env(data_dir, extra), API_KEY, [])
            started[role] = server.start()
        return started[role]

    yield get
    for server in started.values():
        server.stop()
    if "agent" in started:
        _remove_containers(started["agent"])
    if "localvm" in started:
        _stop_double_vms(started["localvm"])
    github.__exit__(None, None, None)


def _remove_containers(agent: RoleServer) -> None:
    from tests.agent.conftest import remove_containers_of

    host_id = agent.data_dir / "host_id"
    if host_id.exists():
        remove_containers_of(host_id.read_text().strip())


def _stop_double_vms(localvm: RoleServer) -> None:
    from tests.localvm.conftest import stop_all_vms

    stop_all_vms(localvm.data_dir / "tart-state", localvm.data_dir)


@pytest.mark.parametrize("role", ["controller", "agent", "localvm"])
def test_oversized_and_deeply_nested_bodies_are_refused_with_json(servers, role):
    server = servers(role)
    with server.client() as client:
        big = client.post(POST_ROUTE[role], content=b'{"x": "' + b"a" * 3_000_000 + b'"}',
                          headers={"Content-Type": "application/json"})
        assert big.status_code == 413, big.text[:300]
        assert "too large" in big.json()["detail"]
        deep = client.post(POST_ROUTE[role], content=b"[" * 100_000 + b"]" * 100_000,
                           headers={"Content-Type": "application/json"})
        assert deep.status_code == 400, deep.text[:300]
        assert "nested too deeply" in deep.json()["detail"]
        assert client.get("/api/health").status_code == 200  # and the server is fine


# A crash inside Hypothesis' target optimiser (IndexError in optimiser.hill_climb, hypothesis 6.170) ends the
# fuzzing of one operation; it says nothing about the API, so it is reported, not failed on.
TOOL_CRASH = "hypothesis/internal/conjecture/optimiser.py"


def _outcome(report: Path) -> tuple[list[str], list[str]]:
    """('METHOD /path: failed check (what came back)' for every failure, the operations the tool crashed on),
    from the run's JUnit report."""
    import xml.etree.ElementTree as ET

    failures, crashes = [], []
    for case in ET.parse(report).getroot().iter("testcase"):
        for failure in [*case.iter("failure"), *case.iter("error")]:
            text = failure.text or failure.get("message") or ""
            if failure.tag == "error" and TOOL_CRASH in text:
                crashes.append(case.get("name"))
                continue
            lines = [line.strip() for line in text.splitlines()]
            checks = [line[2:] for line in lines if line.startswith("- ")] or lines[:1]
            seen = [line for line in lines if line.startswith(("Received:", "[", "`"))][:2]
            failures.append(f"{case.get('name')}: {'; '.join(checks)} {' '.join(seen)}")
    return failures, crashes


@pytest.mark.parametrize("role", ["localvm", "agent", "controller"])
def test_generated_requests_get_documented_replies_and_no_server_error(servers, role, tmp_path):
    server = servers(role)
    report = tmp_path / "junit.xml"
    config = tmp_path / "schemathesis.toml"
    config.write_text(RUNS[role].get("config", ""))
    header = (f"X-Local-Token: {server.headers()['X-Local-Token']}" if role == "localvm"
              else f"Authorization: Bearer {API_KEY}")
    argv = [str(SCHEMATHESIS), "--config-file", str(config), "run", f"{server.url}/api/schema/?format=json",
            "--url", server.url,
            "--checks", RUNS[role]["checks"], *RUNS[role]["exclude"], "--header", header,
            "--max-examples", str(EXAMPLES), "--seed", "20261201", "--phases", "examples,coverage,fuzzing",
            "--workers", "1", "--request-timeout", "30", "--no-shrink", "--suppress-health-check", "all",
            "--report", "junit", "--report-junit-path", str(report)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert report.exists(), done.stdout[-4000:] + done.stderr[-2000:]
    failures, crashes = _outcome(report)
    assert not failures, "\n".join(failures) + "\n\n" + done.stdout[-6000:] + "\n" + server.log()[-3000:]
    if crashes:
        warnings.warn(f"schemathesis crashed (Hypothesis optimiser) while fuzzing {crashes}", stacklevel=1)
    else:
        assert done.returncode == 0, done.stdout[-6000:]
