"""Every client command the controller supports, run as a user runs it against a real controller and a real
docker agent: the json/yaml output is the API's own objects, tables are for people, exit codes are documented."""

from __future__ import annotations

import json
import stat
import tomllib

import yaml

from ttproject.cli.output import parse_time

IMAGE = "ttstack/tiny:latest"
DOCKER_VM = f"{IMAGE},engine=docker,cpu=1,mem=64M,disk=64,ports=80"


def api_json(controller, path):
    with controller.client() as api:
        reply = api.get(path)
    assert reply.status_code == 200, reply.text
    return reply.json()


def same_env(a: dict, b: dict) -> bool:
    keep = ("id", "owner", "state", "lifetime", "expires_at", "created_at")
    return {k: a[k] for k in keep} == {k: b[k] for k in keep} and \
        [(v["id"], v["state"], v["port_map"]) for v in a["vms"]] == [(v["id"], v["state"], v["port_map"]) for v in b["vms"]]


def test_login_profiles_tokens(role_server, cli):
    controller = role_server("controller")

    bad = cli.run("login", controller.url, "--token", "wrong")
    assert bad.returncode == 4 and "Invalid token" in bad.stderr and "Traceback" not in bad.stderr
    assert not cli.config_file.exists()

    cli.ok("login", controller.url, "--token-stdin", input=controller.api_key + "\n")
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config_file.parent.stat().st_mode) == 0o700
    assert tomllib.loads(cli.config_file.read_text()) == {
        "default_profile": "default", "profiles": {"default": {"url": controller.url, "token": controller.api_key}}}
    assert cli.json("status") == api_json(controller, "/api/status")
    assert f"controller     {controller.url}" in cli.ok("status").stdout

    # An owner's personal token works as well, in a profile of its own.
    cli.ok("manage", "controller", "add_owner", "alice", "--password-stdin", input="pw-alice\n",
           env=controller.env)
    made = cli.ok("manage", "controller", "drf_create_token", "alice", env=controller.env).stdout
    token = made.split()[2]
    cli.ok("login", controller.url, "--token", token, "--profile", "alice")
    config = tomllib.loads(cli.config_file.read_text())
    assert config["default_profile"] == "default" and config["profiles"]["alice"]["token"] == token
    assert cli.json("--profile", "alice", "env", "list") == []
    assert cli.json("env", "list", env={"TTSTACK_PROFILE": "alice"}) == []
    denied = cli.run("--profile", "alice", "host", "list")
    assert denied.returncode == 4 and "operators" in denied.stderr

    # TTSTACK_URL / TTSTACK_TOKEN override the profile, and work with no config at all.
    assert cli.run("status", env={"TTSTACK_TOKEN": "nope"}).returncode == 4
    bare = {"XDG_CONFIG_HOME": str(cli.home / "empty")}
    assert cli.json("status", env={**bare, "TTSTACK_URL": controller.url, "TTSTACK_TOKEN": controller.api_key})
    missing = cli.run("status", env=bare)
    assert missing.returncode == 4 and "ttstack login" in missing.stderr
    unknown = cli.run("--profile", "nobody", "status")
    assert unknown.returncode == 2 and "nobody" in unknown.stderr
    gone = cli.run("status", env={"TTSTACK_URL": "http://127.0.0.1:1"})
    assert gone.returncode == 1 and "cannot reach" in gone.stderr and "Traceback" not in gone.stderr


def test_hosts_envs_images_tasks(fleet, cli, env_name):
    controller, agent = fleet
    pub = cli.keygen().with_suffix(".pub")  # in ~/.ssh: the default key of `env create`

    status = cli.json("status")
    assert (status["hosts"], status["hosts_online"]) == (1, 1)
    [host] = cli.json("host", "list")
    stable = ("id", "addr", "host_id", "hostname", "state", "drain", "engines", "storage", "created_at")
    assert {k: host[k] for k in stable} == {k: api_json(controller, "/api/hosts")[0][k] for k in stable}
    assert host["addr"] == agent.addr and "docker" in host["engines"]
    assert cli.json("host", "show", agent.addr)["id"] == cli.json("host", "show", str(host["id"]))["id"] == host["id"]
    table = cli.ok("host", "list").stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "ADDR", "HOSTNAME", "STATE"] and agent.addr in table[1]
    assert yaml.safe_load(cli.ok("host", "show", agent.addr, "-o", "yaml").stdout)["addr"] == agent.addr

    assert cli.json("host", "drain", agent.addr)["drain"] is True
    refused = cli.run("env", "create", env_name(), "--vm", DOCKER_VM)
    assert refused.returncode == 1 and "Error: no host can take VM 0" in refused.stderr
    assert cli.json("host", "undrain", str(host["id"]))["drain"] is False

    name = env_name("demo")
    env = cli.json("env", "create", name, "--vm", DOCKER_VM, "--count", "2", "--lifetime", "2h")
    assert env["state"] == "active" and env["lifetime"] == 7200 and len(env["vms"]) == 2
    assert all(vm["state"] == "running" and set(vm["port_map"]) == {"80"} for vm in env["vms"])
    assert env["ssh_keys"] == [pub.read_text().strip()]
    assert same_env(env, api_json(controller, f"/api/envs/{name}"))
    assert same_env(cli.json("env", "show", name), env)
    [listed] = [e for e in cli.json("env", "list") if e["id"] == name]
    assert same_env(listed, env) and "ssh_keys" not in listed
    assert [e["id"] for e in yaml.safe_load(cli.ok("env", "list", "-o", "yaml").stdout)] == [name]
    assert cli.json("env", "list", "--state", "stopped") == []
    row = next(line for line in cli.ok("env", "list").stdout.splitlines() if line.startswith(name))
    assert row.split()[1:4] == ["-", "active", "2"]
    shown = cli.ok("env", "show", name).stdout
    assert f"{name}/0" in shown and f"{name}/1" in shown and "80->" in shown

    stopped = cli.json("env", "stop", name)
    assert stopped["state"] == "stopped" and {vm["state"] for vm in stopped["vms"]} == {"stopped"}
    assert cli.json("env", "start", name)["state"] == "active"
    assert cli.json("env", "wait", name, "--state", "active", "--timeout", "30s")["id"] == name

    tasks = [t for t in cli.json("task", "list") if t["target"] == name]
    assert [t["action"] for t in tasks][:3] == ["fleet.env_start", "fleet.env_stop", "fleet.env_create"]
    assert all(t["status"] == "completed" for t in tasks)
    shown_task = cli.json("task", "show", tasks[-1]["id"])
    assert shown_task == api_json(controller, f"/api/tasks/{tasks[-1]['id']}")
    assert cli.json("task", "watch", tasks[-1]["id"])["status"] == "completed"
    assert cli.json("task", "list", "--active") == []

    [image] = [i for i in cli.json("image", "list") if i["name"] == IMAGE]
    assert image == next(i for i in api_json(controller, "/api/images") if i["name"] == IMAGE)
    assert IMAGE in cli.ok("image", "list").stdout

    queued = cli.json("env", "delete", name, "--no-wait")
    assert queued["state"] == "deleting" and queued["task"]
    assert cli.json("env", "wait", name, "--state", "deleted") == {"id": name, "state": "deleted"}

    # -f with a CreateEnvReq body from stdin (JSON); --no-wait returns the 202 reply and its task
    other = env_name("file")
    body = {"id": other, "vms": [{"image": IMAGE, "engine": "docker", "cpu": 1, "mem": 64, "disk": 64}],
            "ssh_keys": [pub.read_text().strip()], "lifetime": 600}
    accepted = cli.json("env", "create", "-f", "-", "--no-wait", input=json.dumps(body))
    assert accepted["id"] == other and accepted["state"] == "creating" and accepted["task"]
    assert cli.json("task", "watch", accepted["task"])["status"] == "completed"
    assert cli.json("env", "wait", other)["state"] == "active"

    deleted = cli.json("env", "delete", other)
    assert deleted["action"] == "fleet.env_delete" and deleted["status"] == "completed"
    assert cli.run("env", "show", other).returncode == 3

    cli.ok("host", "rm", agent.addr)
    assert cli.json("host", "list") == []
    assert cli.run("host", "show", agent.addr).returncode == 3


def test_exit_codes(fleet, cli, env_name):
    controller, agent = fleet
    cli.keygen()

    # 1: the task failed (the docker engine has no such image; nothing is pulled) - the environment and its
    # reason on stdout with -o json, the reason on stderr
    broken = env_name("broken")
    failed = cli.run("env", "create", broken, "--vm", "ttc-no-such-image:latest,engine=docker,cpu=1,mem=64,disk=64",
                     "-o", "json")
    assert failed.returncode == 1, failed.stderr
    assert json.loads(failed.stdout)["state"] == "failed"
    assert "failed" in failed.stderr and "Traceback" not in failed.stderr
    cli.ok("env", "delete", broken)

    # 3: not found, with the API's detail
    for args in (("env", "show", "nope"), ("env", "stop", "nope"), ("env", "delete", "nope"),
                 ("host", "show", "99"), ("host", "show", "10.9.9.9:1"), ("task", "show", "0" * 8 + "-0000"),
                 ("env", "ssh", "nope/0", "--", "true")):
        done = cli.run(*args)
        assert done.returncode == 3, (args, done.stderr)
        assert done.stderr.startswith("Error: ") and "Traceback" not in done.stderr

    # 4: a wrong token
    done = cli.run("env", "list", env={"TTSTACK_TOKEN": "bad"})
    assert done.returncode == 4 and "Invalid token" in done.stderr

    # 2: usage errors, before anything is sent
    for args in (("env", "create", "x"), ("env", "create", "x", "--vm", "cpu=1"),
                 ("env", "create", "x", "--vm", "tiny", "--lifetime", "2x"),
                 ("env", "create", "x", "--vm", "tiny,mem=12Q"), ("env", "create", "x", "--vm", "tiny,colour=red"),
                 ("env", "list", "-o", "xml"), ("env", "bogus"), ("host", "drain"),
                 ("env", "create", "x", "--vm", "tiny", "--key", "/nonexistent.pub")):
        done = cli.run(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert cli.json("env", "list") == []

    # extend, then detach with a VM still on the host: the env goes failed, the host is detached and can go
    name = env_name("ext")
    before = cli.json("env", "create", name, "--vm", DOCKER_VM, "--lifetime", "10m")["expires_at"]
    extended = cli.json("env", "extend", name, "2h")
    assert parse_time(extended["expires_at"]).timestamp() - parse_time(before).timestamp() > 3600
    detached = cli.json("host", "detach", agent.addr)
    assert detached["addr"] == agent.addr and detached["state"] == "detached", detached
    env = cli.json("env", "show", name)
    assert env["state"] == "failed" and "detached" in env["error"], env
    assert cli.run("host", "detach", "10.9.9.9:1").returncode == 3
    cli.ok("env", "delete", name)
    cli.ok("host", "rm", agent.addr)
    assert cli.json("host", "list") == []
