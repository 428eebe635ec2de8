"""Contract of tests/doubles/tart, the test double of Cirrus Labs' `tart` CLI.

Plain subprocess calls, no Django. Every test gets its own state directory. The double's messages and
exit codes follow tart's sources; see tests/doubles/README.md.
"""

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

DOUBLE = Path(__file__).resolve().parent.parent / "doubles" / "tart"
IMAGE = "ghcr.io/cirruslabs/macos-sonoma-base:latest"
LINUX_IMAGE = "ghcr.io/cirruslabs/ubuntu:latest"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\r")


@pytest.fixture
def tart(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TART_DOUBLE_") and k != "CI"}
    env.update(
        TART_DOUBLE_STATE=str(tmp_path / "state"),
        TART_DOUBLE_PULL_STEP="0.01",
        TART_DOUBLE_BOOT_DELAY="0.2",
        CI="true",
    )
    procs = []

    class Tart:
        def __init__(self):
            self.env = env

        def __call__(self, *args, env=None, timeout=30):
            return subprocess.run(
                [sys.executable, str(DOUBLE), *args],
                env={**self.env, **(env or {})},
                capture_output=True,
                text=True,
                timeout=timeout,
            )

        def popen(self, *args, env=None):
            proc = subprocess.Popen(
                [sys.executable, str(DOUBLE), *args],
                env={**self.env, **(env or {})},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            return proc

        def ok(self, *args, **kwargs):
            result = self(*args, **kwargs)
            assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
            return result

        def vm(self, name, image=IMAGE):
            self.ok("pull", image)
            self.ok("clone", image, name)

    yield Tart()
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def list_json(tart, *args):
    return json.loads(tart.ok("list", "--format", "json", *args).stdout)


def get_json(tart, name):
    return json.loads(tart.ok("get", name, "--format", "json").stdout)


def test_is_an_executable_python3_script():
    assert os.access(DOUBLE, os.X_OK)
    assert DOUBLE.read_text().startswith("#!/usr/bin/env python3\n")


def test_version(tart):
    assert re.fullmatch(r"2\.\d+\.\d+\n", tart.ok("--version").stdout)


def test_list_json_fields(tart):
    assert list_json(tart) == []
    tart.vm("vm1")
    infos = list_json(tart)
    for info in infos:
        assert list(info) == ["Source", "Name", "Disk", "Size", "Accessed", "Running", "State"]
        assert isinstance(info["Disk"], int) and isinstance(info["Size"], int)
        assert info["Running"] is False and info["State"] == "stopped"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["Accessed"])
    local = [i for i in infos if i["Source"] == "local"]
    oci = [i for i in infos if i["Source"] == "OCI"]
    assert [i["Name"] for i in local] == ["vm1"]
    # the tag and the digest it points to, as real tart lists its OCI cache
    assert oci[0]["Name"] == IMAGE
    assert re.fullmatch(r"ghcr\.io/cirruslabs/macos-sonoma-base@sha256:[0-9a-f]{64}", oci[1]["Name"])
    assert [i["Name"] for i in list_json(tart, "--source", "local")] == ["vm1"]
    assert [i["Source"] for i in list_json(tart, "--source", "oci")] == ["OCI", "OCI"]
    assert tart.ok("list", "--quiet").stdout.splitlines()[0] == "vm1"
    # Swift's JSONEncoder escapes slashes; the output is still plain JSON
    assert "ghcr.io\\/cirruslabs" in tart.ok("list", "--format", "json").stdout


def test_get_json_fields(tart):
    tart.vm("vm1")
    info = get_json(tart, "vm1")
    assert list(info) == ["OS", "CPU", "Memory", "Disk", "DiskFormat", "Size", "Display", "Running", "State"]
    assert info["OS"] == "darwin"
    assert isinstance(info["CPU"], int) and isinstance(info["Memory"], int) and isinstance(info["Disk"], int)
    assert info["DiskFormat"] == "raw"
    assert re.fullmatch(r"\d+\.\d{3}", info["Size"])
    assert info["Display"] == "1024x768"
    assert (info["Running"], info["State"]) == (False, "stopped")
    tart.vm("lin", LINUX_IMAGE)
    assert get_json(tart, "lin")["OS"] == "linux"
    text = tart.ok("get", "vm1").stdout.splitlines()
    assert text[0].split() == ["OS", "CPU", "Memory", "Disk", "DiskFormat", "Size", "Display", "State"]


@pytest.mark.parametrize(
    "args",
    [("get", "nope"), ("ip", "nope"), ("set", "nope", "--cpu", "4"), ("stop", "nope"), ("delete", "nope"),
     ("clone", "nope", "copy")],
)
def test_missing_vm_exits_2(tart, args):
    result = tart(*args)
    assert result.returncode == 2
    assert result.stderr == 'the specified VM "nope" does not exist\n'
    assert result.stdout == ""


def test_run_missing_vm_is_a_validation_failure(tart):
    # tart's Run.validate() opens the VM, so swift-argument-parser reports it: "Error: ..." and exit 1
    result = tart("run", "nope")
    assert result.returncode == 1
    assert result.stderr == 'Error: the specified VM "nope" does not exist\n'


def test_ip_fails_when_stopped(tart):
    tart.vm("vm1")
    result = tart("ip", "vm1")
    assert result.returncode == 1
    assert result.stderr == "no IP address found, is your VM running?\n"
    started = time.monotonic()
    assert tart("ip", "vm1", "--wait", "1").returncode == 1
    assert time.monotonic() - started >= 1


def test_run_blocks_until_stop(tart):
    tart.vm("vm1")
    run = tart.popen("run", "--no-graphics", "vm1")
    ip = tart.ok("ip", "vm1", "--wait", "10").stdout.strip()
    assert re.fullmatch(r"192\.168\.64\.\d+", ip)
    assert tart.ok("ip", "vm1").stdout.strip() == ip  # stable while running
    time.sleep(0.3)
    assert run.poll() is None, "tart run must block while the VM runs"
    assert (get_json(tart, "vm1")["Running"], get_json(tart, "vm1")["State"]) == (True, "running")
    assert [i["State"] for i in list_json(tart, "--source", "local")] == ["running"]

    again = tart("run", "vm1")
    assert (again.returncode, again.stderr) == (2, 'VM "vm1" is already running!\n')
    refused = tart("delete", "vm1")
    assert (refused.returncode, refused.stderr) == (1, 'VM "vm1" is running\n')

    tart.ok("stop", "--timeout", "5", "vm1")
    assert run.wait(timeout=10) == 0
    assert get_json(tart, "vm1")["State"] == "stopped"
    assert tart("ip", "vm1").returncode == 1
    stopped = tart("stop", "vm1")
    assert (stopped.returncode, stopped.stderr) == (2, 'VM "vm1" is not running\n')


def test_run_stops_on_sigterm_and_prints_vnc_url(tart):
    tart.vm("vm1")
    run = tart.popen("run", "--vnc", "--no-graphics", "vm1")
    line = run.stdout.readline()
    assert re.fullmatch(r"VNC server is running at vnc://192\.168\.64\.\d+\n", line)
    run.terminate()
    assert run.wait(timeout=10) == 0
    assert get_json(tart, "vm1")["State"] == "stopped"


def test_run_failure_and_oci_image_refused(tart):
    tart.vm("vm1")
    failed = tart("run", "vm1", env={"TART_DOUBLE_RUN_FAIL": "vm1"})
    assert failed.returncode == 1 and failed.stderr.strip()
    assert get_json(tart, "vm1")["State"] == "stopped"
    oci = tart("run", IMAGE)
    assert (oci.returncode, oci.stderr) == (1, f'Error: the specified VM "{IMAGE}" does not exist\n')


def test_ip_delay(tart):
    tart.vm("vm1")
    started = time.monotonic()
    assert tart("ip", "vm1", env={"TART_DOUBLE_IP_DELAY": "0.5"}).returncode == 1
    assert time.monotonic() - started >= 0.5


def test_clone_overwrites_silently(tart):
    tart.vm("vm1")
    tart.ok("set", "vm1", "--cpu", "8")
    tart.ok("clone", "vm1", "vm2")
    assert get_json(tart, "vm2")["CPU"] == 8
    result = tart.ok("clone", IMAGE, "vm2")
    assert result.stdout == result.stderr == ""
    assert get_json(tart, "vm2")["CPU"] == 4
    assert [i["Name"] for i in list_json(tart, "--source", "local")] == ["vm1", "vm2"]


def test_clone_pulls_a_missing_remote_image(tart):
    result = tart.ok("clone", LINUX_IMAGE, "lin")
    lines = result.stdout.splitlines()
    assert lines[0] == "pulling manifest..."
    assert lines[-2:] == ["100%", "pulling NVRAM..."]
    assert get_json(tart, "lin")["OS"] == "linux"
    assert LINUX_IMAGE in tart.ok("list", "--quiet").stdout.splitlines()
    # already pulled: no pull output the second time
    assert tart.ok("clone", LINUX_IMAGE, "lin2").stdout == ""


def test_pull_prints_progress_incrementally(tart):
    pull = tart.popen("pull", IMAGE, env={"TART_DOUBLE_PULL_STEP": "0.1"})
    arrivals = []
    for line in pull.stdout:
        arrivals.append((line.rstrip("\n"), time.monotonic(), pull.poll()))
    assert pull.wait(timeout=10) == 0
    lines = [text for text, _, _ in arrivals]
    assert lines[:3] == [f"pulling {IMAGE}...", "pulling manifest...", "pulling disk (20.0 GB compressed)..."]
    assert lines[3:14] == [f"{pct}%" for pct in range(0, 101, 10)]
    assert lines[14:] == ["pulling NVRAM..."]
    # lines arrive while the pull is still going, spread over its duration
    assert arrivals[0][2] is None
    assert arrivals[-1][1] - arrivals[0][1] >= 1.0
    again = tart.ok("pull", IMAGE).stdout.splitlines()
    assert again[-1].endswith("image is already cached and linked!")


def test_pull_progress_without_ci_uses_tarts_cursor_escapes(tart):
    env = {k: v for k, v in tart.env.items() if k != "CI"}
    result = subprocess.run([sys.executable, str(DOUBLE), "pull", IMAGE], env=env, capture_output=True, timeout=30)
    assert result.returncode == 0
    stdout = result.stdout.decode()
    assert "\x1b[1A\r\x1b[J10%\n" in stdout
    assert [ANSI.sub("", line) for line in stdout.split("\n")][3:14] == [
        f"{pct}%" for pct in range(0, 101, 10)
    ]


def test_pull_errors(tart):
    invalid = tart("pull", "not a reference")
    assert invalid.returncode == 1
    assert invalid.stderr.startswith("failed to parse remote name: ")
    missing = tart("pull", "ghcr.io/cirruslabs/does-not-exist:latest")
    assert missing.returncode == 1
    assert missing.stderr.startswith('Error: UnexpectedHTTPStatusCode(when: "pulling manifest", code: 404')
    assert tart("clone", "ghcr.io/cirruslabs/does-not-exist:latest", "x").returncode == 1
    assert list_json(tart) == []


def test_set_refuses_shrinking_disk(tart):
    tart.vm("vm1")
    assert get_json(tart, "vm1")["Disk"] == 50
    shrink = tart("set", "vm1", "--disk-size", "20")
    assert shrink.returncode == 1
    assert shrink.stderr == "new disk size of 20 GB should be larger than the current disk size of 50 GB\n"
    assert get_json(tart, "vm1")["Disk"] == 50
    tart.ok("set", "vm1", "--disk-size", "80", "--cpu", "6", "--memory", "16384", "--display", "1920x1200")
    info = get_json(tart, "vm1")
    assert (info["Disk"], info["CPU"], info["Memory"], info["Display"]) == (80, 6, 16384, "1920x1200")


def test_delete(tart):
    tart.vm("vm1")
    tart.ok("delete", "vm1")
    assert [i["Source"] for i in list_json(tart)] == ["OCI", "OCI"]
    tart.ok("delete", IMAGE)  # the digest goes too: nothing references it any more
    assert list_json(tart) == []


def test_parallel_clones_do_not_corrupt_state(tart, tmp_path):
    tart.ok("pull", IMAGE)
    names = [f"vm{i}" for i in range(8)]
    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(lambda n: tart("clone", IMAGE, n), names))
    assert [r.returncode for r in results] == [0] * len(names)
    assert [i["Name"] for i in list_json(tart, "--source", "local")] == names
    for path in (tmp_path / "state").rglob("*.json"):
        json.loads(path.read_text())
    # a clone of an image another local VM already uses gets a new MAC address, hence distinct IPs
    macs = {json.loads(p.read_text())["mac"] for p in (tmp_path / "state" / "vms").glob("*.json")}
    assert len(macs) == len(names)


def test_parallel_clones_of_an_unpulled_image(tart):
    def clone(name):
        return tart("clone", LINUX_IMAGE, name, env={"TART_DOUBLE_PULL_STEP": "0.1"})

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(clone, ["a", "b"]))
    assert [r.returncode for r in results] == [0, 0]
    # one of them downloads; the other waits for the per-host lock (as tart does) and reuses the image
    waited, pulled = sorted((r.stdout for r in results), key=lambda out: "pulling NVRAM..." in out)
    assert "pulling NVRAM..." in pulled
    assert "pulling disk" not in waited
    if "waiting for lock..." in waited:
        assert waited.splitlines()[-1].endswith("image is already cached! creating a symlink...")
    assert [i["Name"] for i in list_json(tart, "--source", "local")] == ["a", "b"]


@pytest.mark.parametrize(
    "args, message",
    [(("frobnicate",), "Error: Unexpected argument 'frobnicate'"),
     (("list", "--bogus"), "Error: Unknown option '--bogus'"),
     (("get",), "Error: Missing expected argument '<name>'"),
     (("list", "--format", "yaml"), "Error: The value 'yaml' is invalid for '--format <format>'"),
     (("list", "--source", "nfs"), "Error: 'nfs' is not a valid <source>"),
     (("clone", IMAGE, "a/b"), "Error: <new-name> should be a local name")],
)
def test_usage_errors_exit_64(tart, args, message):
    result = tart(*args)
    assert result.returncode == 64
    assert result.stderr.splitlines()[0] == message
    assert result.stderr.splitlines()[1].startswith("Usage: tart")


def test_seed(tart, tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"images": [IMAGE], "vms": [{"name": "seeded", "os": "linux", "cpu": 2}]}))
    names = tart.ok("list", "--quiet", env={"TART_DOUBLE_SEED": str(seed)}).stdout.splitlines()
    assert names[0] == "seeded" and IMAGE in names
    tart.ok("delete", "seeded")
    # the seed applies once, on first use of the state directory
    assert "seeded" not in tart.ok("list", "--quiet", env={"TART_DOUBLE_SEED": str(seed)}).stdout.splitlines()
