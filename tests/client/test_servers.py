"""The server side of `ttstack` (issue 11): a worker killed inside `ttstack controller` is replaced while the web
keeps serving, and `ttstack up` never lets its API key file be readable by others, not even for a moment."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import stat
import subprocess
import sys

from tests.conftest import ROOT, free_port, require, wait_for
from tests.core.test_task_websocket import JOBS_ENV, submit_in_server_db
from ttproject.cli.servers import read_or_make_key
from ttproject.cli.supervisor import child_pids
from ttproject.procutil import pid_alive


def descendants(pid: int) -> set[int]:
    found = set()
    for child in child_pids(pid):
        found |= {child, *descendants(child)}
    return found


def cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def worker_of(server) -> int | None:
    workers = [p for p in child_pids(server.proc.pid) if " worker --role controller" in cmdline(p)]
    return workers[0] if workers else None


def test_controller_replaces_a_killed_worker_and_keeps_serving(role_server):
    server = role_server("controller", env=JOBS_ENV)
    old = wait_for(lambda: worker_of(server), message="the controller's worker")
    old_tree = wait_for(lambda: descendants(old) if len(descendants(old)) >= 2 else None,
                        message="the worker's job cluster and fleet loop")

    os.kill(old, signal.SIGKILL)
    with server.client() as api:
        new = wait_for(lambda: (api.get("/api/health").status_code == 200 or None)
                       and (w if (w := worker_of(server)) not in (None, old) else None), timeout=60,
                       message="a new worker, the web answering all along")
        # What the killed worker had started is stopped, not left running unsupervised.
        wait_for(lambda: not any(pid_alive(p, zombie_is_dead=True) for p in old_tree), timeout=60,
                 message=f"the killed worker's processes {sorted(old_tree)} to end")
        assert server.proc.poll() is None
        assert "controller worker was killed by signal 9; starting it again" in server.log()

        task_id = submit_in_server_db(server, "test.steps", {"count": 2, "delay": 0.1})
        task = wait_for(lambda: (t := api.get(f"/api/tasks/{task_id}").json())["status"] in ("completed", "failed")
                        and t, timeout=60, message="the task run by the new worker")
    assert task["status"] == "completed", task
    # ...by a job process of the new worker (claimed_by = host:pid, kept in the controller's database)
    with sqlite3.connect(server.data_dir / "controller.sqlite3") as db:
        [(claimed_by,)] = db.execute("SELECT claimed_by FROM tasks_task WHERE id = ?", (task_id,)).fetchall()
    assert int(claimed_by.rsplit(":", 1)[1]) in descendants(new)


def test_up_never_leaves_a_key_file_readable_by_others(tmp_path):
    """The file is created 0600 in the call that creates it: when the write itself fails (no room for a
    single byte: RLIMIT_FSIZE 0), there is no key file or a 0600 one, never one readable by others."""
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("TTSTACK_API_KEY", "DATABASE_URL", "REDIS_URL")}
    env.update(TTSTACK_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT))

    def no_room():
        os.umask(0o022)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    done = subprocess.run([sys.executable, "-m", "ttproject.cli", "up", "--port", str(free_port()),
                           "--agent-port", str(free_port())], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120, preexec_fn=no_room)
    assert done.returncode != 0, done.stdout + done.stderr
    key_file = data_dir / "api_key"
    assert not key_file.exists() or stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_key_file_is_made_once_and_kept(tmp_path):
    path = tmp_path / "api_key"
    old_umask = os.umask(0)
    try:
        key = read_or_make_key(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) >= 32
    assert read_or_make_key(path) == key == path.read_text().strip()


def test_up_lets_qemu_reach_the_local_agents_disks(tmp_path):
    """With qemu on the local agent, `ttstack up` gives its data dir search permission for others (0711, never
    read), as the agent gives its own: qemu runs as libvirt's user and walks down to the VM disks below both.
    Before, a fresh /var/lib/ttstack stayed 0700 and every qemu VM of the README's example failed."""
    require("libvirt")
    data_dir, log = tmp_path / "data", tmp_path / "up.log"
    env = {k: v for k, v in os.environ.items() if k not in ("TTSTACK_API_KEY", "DATABASE_URL", "REDIS_URL")}
    env.update(TTSTACK_DATA_DIR=str(data_dir), TTSTACK_ENGINES="qemu", PYTHONPATH=str(ROOT))
    with open(log, "w") as out:
        up = subprocess.Popen([sys.executable, "-m", "ttproject.cli", "up", "--port", str(free_port()),
                               "--agent-port", str(free_port())], env=env, cwd=ROOT, stdout=out,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "ttstack is running" in log.read_text() or up.poll() is not None, timeout=120,
                 message="ttstack up")
        assert up.poll() is None, log.read_text()
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (data_dir, data_dir / "agent",
                                                                  data_dir / "api_key")}
        assert modes == {"data": 0o711, "agent": 0o711, "api_key": 0o600}, modes
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(60)
