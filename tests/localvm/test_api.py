"""Every curl example of the localvm contract (seeds/002), against `ttstack localvm` + the tart double."""

import json
import stat

from .conftest import BASE_IMAGE, FAILING_VM

VM_KEYS = {"name", "status", "ip_address", "source", "os", "cpu", "memory", "disk_size", "display"}
TASK_KEYS = {"id", "action", "status", "command", "exit_code", "result", "error", "stderr", "created_at",
             "updated_at", "logs"}


def test_health(api):
    reply = api.get("/api/health")
    assert reply.status_code == 200
    assert reply.json()["status"] == "ok"


def test_github_token_settings(api):
    assert api.get("/api/settings/github-token").json() == {"configured": False, "masked_token": None}
    reply = api.post("/api/settings/github-token", json={"token": "ghp_your_token_here"})
    assert reply.status_code == 200
    assert reply.json() == {"configured": True, "masked_token": "ghp_...ere"}
    shown = api.get("/api/settings/github-token").json()
    assert shown == {"configured": True, "masked_token": "ghp_...ere"}
    assert "ghp_your_token_here" not in json.dumps(shown)
    reply = api.post("/api/settings/github-token", json={"token": ""})
    assert reply.json() == {"configured": False, "masked_token": None}


def test_github_token_lives_in_a_private_file_and_null_clears_it(localvm, api):
    """The reference UI clears the token with {"token": null}."""
    token_file = localvm.server.data_dir / "localvm" / "github_token"
    assert api.post("/api/settings/github-token", json={"token": "ghp_private_token_42"}).status_code == 200
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == "ghp_private_token_42"
    reply = api.post("/api/settings/github-token", json={"token": None})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"configured": False, "masked_token": None}
    assert not token_file.exists()
    assert api.get("/api/settings/github-token").json()["configured"] is False
    assert api.get("/api/vms/available-images").status_code == 422  # no token: the catalogue says so


def test_tart_version(api):
    reply = api.get("/api/tart/version")
    assert reply.status_code == 200
    assert reply.json() == {"version": "2.28.6"}


def test_list_refresh_get_categorized(localvm, api):
    vms = api.get("/api/vms").json()
    assert {vm["name"] for vm in vms} >= {"dev", "second", BASE_IMAGE}
    for vm in vms:
        assert set(vm) == VM_KEYS
    dev = next(vm for vm in vms if vm["name"] == "dev")
    assert dev["source"] == "local" and dev["status"] in ("stopped", "running")

    # Made behind the server's back: the cached list does not know it until a refresh.
    assert localvm.tart("clone", "dev", "outside").returncode == 0
    assert "outside" not in {vm["name"] for vm in api.get("/api/vms").json()}
    reply = api.post("/api/vms/refresh", json={})
    assert reply.status_code == 200
    assert "outside" in {vm["name"] for vm in reply.json()}
    assert "outside" in {vm["name"] for vm in api.get("/api/vms").json()}

    one = api.get("/api/vms/dev")
    assert one.status_code == 200 and one.json()["name"] == "dev"
    image = api.get(f"/api/vms/{BASE_IMAGE}")
    assert image.status_code == 200 and image.json()["source"] == "OCI"

    summary = api.get("/api/vms/categorized").json()
    assert set(summary) == {"base_images", "working_vms"}
    assert BASE_IMAGE in {vm["name"] for vm in summary["base_images"]}
    assert {vm["source"] for vm in summary["base_images"]} == {"OCI"}
    assert {"dev", "outside"} <= {vm["name"] for vm in summary["working_vms"]}
    assert {vm["source"] for vm in summary["working_vms"]} == {"local"}


def test_config_cached_and_force_refresh(localvm, api):
    assert localvm.tart("clone", "dev", "cfg-vm").returncode == 0
    first = api.get("/api/vms/cfg-vm/config")
    assert first.status_code == 200
    config = first.json()
    assert config == {"name": "cfg-vm", "cpu": 4, "memory": "8G", "disk_size": "50G", "raw": config["raw"]}
    assert config["raw"]["OS"] == "darwin" and config["raw"]["Memory"] == 8192
    # Changed behind the server's back: the cached config stays until ?force_refresh=true.
    assert localvm.tart("set", "cfg-vm", "--cpu", "6", "--memory", "12288").returncode == 0
    assert api.get("/api/vms/cfg-vm/config").json()["cpu"] == 4
    fresh = api.get("/api/vms/cfg-vm/config", params={"force_refresh": "true"}).json()
    assert fresh["cpu"] == 6 and fresh["memory"] == "12G"


def test_config_route_is_not_swallowed_by_the_name_route(api):
    reply = api.get("/api/vms/dev/config")
    assert set(reply.json()) == {"name", "cpu", "memory", "disk_size", "raw"}
    assert set(api.get("/api/vms/dev").json()) == VM_KEYS


def test_start_and_stop(localvm, api):
    assert localvm.tart("clone", "dev", "runner").returncode == 0
    task = localvm.run_task("/api/vms/runner/start")
    assert task["status"] == "completed", task
    assert set(task) >= TASK_KEYS
    assert task["command"] == [str(localvm.server.env["TTSTACK_TART_BIN"]), "run", "--vnc", "--no-graphics",
                               "runner"]
    ip = task["result"]["ip_address"]
    assert ip and ip.startswith("192.168.64.")
    assert task["result"]["vnc_url"] == f"vnc://{ip}"
    assert task["result"]["message"]
    assert any("VNC server is running" in line for line in task["logs"])
    assert isinstance(task["created_at"], float) and task["updated_at"] >= task["created_at"]

    vm = api.get("/api/vms/runner").json()  # the job refreshed the inventory
    assert vm["status"] == "running" and vm["ip_address"] == ip
    assert json.loads(localvm.tart("get", "runner", "--format", "json").stdout)["Running"] is True

    task = localvm.run_task("/api/vms/runner/stop")
    assert task["status"] == "completed", task
    assert task["command"][1:] == ["stop", "--timeout", "30", "runner"]
    assert task["exit_code"] == 0
    assert api.get("/api/vms/runner").json()["status"] == "stopped"

    again = localvm.run_task("/api/vms/runner/stop")  # stopping a stopped VM is not an error
    assert again["status"] == "completed" and "already stopped" in again["result"]["message"]


def test_failing_start_is_a_failed_task_with_stderr(localvm):
    task = localvm.run_task(f"/api/vms/{FAILING_VM}/start")
    assert task["status"] == "failed", task
    assert "The virtual machine failed to start" in task["stderr"]
    assert "tart run failed" in task["error"]
    assert task["exit_code"] == 1


def test_pull(localvm, api):
    url = "ghcr.io/cirruslabs/macos-ventura-base:latest"
    task = localvm.run_task("/api/vms/pull", {"oci_url": url})
    assert task["status"] == "completed", task
    assert task["command"][1:] == ["pull", url] and task["exit_code"] == 0
    assert "pulling manifest..." in task["logs"]
    percents = [line for line in task["logs"] if line.endswith("%")]
    assert percents[0] == "0%" and percents[-1] == "100%"
    assert not any("\x1b" in line for line in task["logs"])  # terminal escapes removed
    assert url in {vm["name"] for vm in api.get("/api/vms/categorized").json()["base_images"]}


def test_failing_pull_keeps_stderr(localvm):
    task = localvm.run_task("/api/vms/pull", {"oci_url": "ghcr.io/cirruslabs/does-not-exist:latest"})
    assert task["status"] == "failed"
    assert "manifest unknown" in task["stderr"] and task["exit_code"] == 1
    assert "pulling manifest..." in task["logs"]


def test_clone_and_start_after_clone(localvm, api):
    task = localvm.run_task("/api/vms/dev/clone", {"new_name": "my-clone", "start_after_clone": False})
    assert task["status"] == "completed", task
    assert task["command"][1:] == ["clone", "dev", "my-clone"]
    assert api.get("/api/vms/my-clone").json()["status"] == "stopped"

    task = localvm.run_task("/api/vms/my-clone/clone", {"new_name": "my-clone-2", "start_after_clone": True})
    assert task["status"] == "completed", task
    assert task["result"]["ip_address"] and task["result"]["vnc_url"].startswith("vnc://")
    assert api.get("/api/vms/my-clone-2").json()["status"] == "running"
    localvm.run_task("/api/vms/my-clone-2/stop")


def test_create_clones_then_sets_cpu_memory_disk(localvm, api):
    body = {"name": "dev-vm", "source_vm": BASE_IMAGE, "cpu": 4, "memory": 8, "disk_size": 60}
    task = localvm.run_task("/api/vms/create", body)
    assert task["status"] == "completed", task
    assert task["command"][1:] == ["set", "dev-vm", "--cpu", "4", "--memory", "8192", "--disk-size", "60"]
    raw = json.loads(localvm.tart("get", "dev-vm", "--format", "json").stdout)
    assert (raw["CPU"], raw["Memory"], raw["Disk"]) == (4, 8192, 60)
    config = api.get("/api/vms/dev-vm/config").json()
    assert (config["cpu"], config["memory"], config["disk_size"]) == (4, "8G", "60G")


def test_create_from_an_image_not_pulled_yet(localvm):
    body = {"name": "from-remote", "source_vm": "ghcr.io/cirruslabs/macos-sequoia-base:latest", "cpu": 5,
            "memory": 16}
    task = localvm.run_task("/api/vms/create", body)
    assert task["status"] == "completed", task
    assert any(line.endswith("%") for line in task["logs"])  # the clone pulled it first
    raw = json.loads(localvm.tart("get", "from-remote", "--format", "json").stdout)
    assert (raw["CPU"], raw["Memory"]) == (5, 16384)


def test_second_clone_or_create_to_a_name_being_made_is_409(localvm, api):
    """`tart clone` silently replaces an existing VM: while a create of "contested" is pending or running
    (it pulls an unpulled image first: 10 progress steps of TART_DOUBLE_PULL_STEP), a clone or create to
    that name is refused instead of being queued."""
    first = api.post("/api/vms/create", json={"name": "contested",
                                              "source_vm": "ghcr.io/cirruslabs/macos-contested-base:latest"})
    assert first.status_code == 202, first.text
    first = first.json()
    for path, body in (("/api/vms/dev/clone", {"new_name": "contested"}),
                       ("/api/vms/create", {"name": "contested", "source_vm": "dev"})):
        reply = api.post(path, json=body)
        assert reply.status_code == 409, (path, reply.text)
        assert first["id"] in reply.json()["detail"]  # refused because of the task, not `tart list`
    assert localvm.wait_task(first["id"])["status"] == "completed"
    assert localvm.run_task("/api/vms/contested/delete")["status"] == "completed"


def test_create_whose_tart_set_fails_is_rolled_back(localvm, api):
    # The double refuses shrinking the disk (50 GB image): the half-made clone is deleted.
    task = localvm.run_task("/api/vms/create", {"name": "too-small", "source_vm": "dev", "disk_size": 20})
    assert task["status"] == "failed"
    assert "should be larger" in task["stderr"]
    assert localvm.tart("get", "too-small").returncode == 2
    assert api.get("/api/vms/too-small").status_code == 404


def test_delete(localvm, api):
    assert localvm.tart("clone", "dev", "doomed").returncode == 0
    task = localvm.run_task("/api/vms/doomed/start")
    assert task["status"] == "completed"
    task = localvm.run_task("/api/vms/doomed/delete")  # a running VM is stopped first
    assert task["status"] == "completed", task
    assert task["command"][1:] == ["delete", "doomed"]
    assert localvm.tart("get", "doomed").returncode == 2
    assert api.get("/api/vms/doomed").status_code == 404


def test_delete_a_pulled_image(localvm, api):
    url = "ghcr.io/cirruslabs/macos-monterey-base:latest"
    assert localvm.run_task("/api/vms/pull", {"oci_url": url})["status"] == "completed"
    task = localvm.run_task(f"/api/vms/{url}/delete")
    assert task["status"] == "completed", task
    assert url not in {vm["name"] for vm in api.get("/api/vms").json()}


def test_tasks_active_and_get(localvm, api):
    reply = api.post("/api/vms/pull", json={"oci_url": "ghcr.io/cirruslabs/macos-active-base:latest"})
    assert reply.status_code == 202
    task = reply.json()
    assert task["status"] == "pending" and task["action"] == "localvm.pull"
    active = api.get("/api/tasks/active")
    assert active.status_code == 200
    assert task["id"] in {t["id"] for t in active.json()}
    done = localvm.wait_task(task["id"])
    assert done["status"] == "completed"
    assert task["id"] not in {t["id"] for t in api.get("/api/tasks/active").json()}
    assert api.get(f"/api/tasks/{task['id']}").json()["status"] == "completed"


def test_task_history_survives_a_restart(localvm, api):
    task = localvm.run_task("/api/vms/second/stop")
    localvm.restart()
    reply = api.get(f"/api/tasks/{task['id']}")
    assert reply.status_code == 200
    assert reply.json()["status"] == "completed"


def test_index_page_answers(localvm):
    import httpx

    reply = httpx.get(localvm.url + "/")
    assert reply.status_code == 200
