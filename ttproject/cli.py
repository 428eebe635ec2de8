"""`ttstack`: start a role, its worker, or the whole local stack; build images; run manage commands.

    ttstack controller [--port 9200] [--bind ADDR] [--api-key KEY] [--no-worker]
    ttstack worker [--role controller|localvm]
    ttstack agent [--port 9100] [--bind ADDR] [--api-key KEY] [--storage file|raw|zvol|zfs]
    ttstack localvm [--port 8000]
    ttstack up                     controller + worker + local agent, host registered, key printed
    ttstack image build tiny|docker-tiny|debian-12 [--engine qemu|docker] [--force]
    ttstack manage ROLE ARGS...    any manage.py command for that role

Everything is passed to the child processes through environment variables (see README, "Settings").
"""

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_PORTS = {"controller": 9200, "agent": 9100, "localvm": 8000}
STORAGE_ALIASES = {"file": "file", "raw": "file", "zvol": "zvol", "zfs": "zvol"}


def _default_data_dir() -> Path:
    return Path("/var/lib/ttstack") if os.geteuid() == 0 else Path.home() / ".ttstack"


def _setup(role: str):
    os.environ["TTSTACK_ROLE"] = role
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ttproject.settings")
    import django

    django.setup()


def _migrate(role: str):
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def _prepare(role: str):
    """Let the role's app check its configuration before serving (e.g. the agent's storage)."""
    import importlib

    app = {"controller": "fleet", "agent": "agent", "localvm": "localvm"}[role]
    try:
        startup = importlib.import_module(f"{app}.startup")
    except ModuleNotFoundError as exc:
        if exc.name != f"{app}.startup":
            raise
        return
    startup.prepare()


class Supervisor:
    """Runs child processes; when one exits or we are signalled, stops them all."""

    def __init__(self):
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stopping = False

    def spawn(self, name: str, argv: list[str], env: dict | None = None):
        proc = subprocess.Popen(argv, env=env or os.environ.copy())
        self.children.append((name, proc))
        return proc

    def stop(self, *_):
        if self.stopping:
            return
        self.stopping = True
        for _, proc in self.children:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for _, proc in self.children:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()

    def wait(self, every: float = 0, tick=None) -> int:
        """Until a child exits or we are signalled; call `tick()` every `every` seconds meanwhile."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        next_tick = time.monotonic() + every
        try:
            while not self.stopping:
                for name, proc in self.children:
                    if proc.poll() is not None:
                        print(f"ttstack: {name} exited with code {proc.returncode}", file=sys.stderr)
                        self.stop()
                        return proc.returncode or 1
                if tick and time.monotonic() >= next_tick:
                    tick()
                    next_tick = time.monotonic() + every
                time.sleep(0.2)
        finally:
            self.stop()
        return 0


def _daphne_argv(bind: str, port: int) -> list[str]:
    return [sys.executable, "-m", "daphne", "-b", bind, "-p", str(port), "--proxy-headers",
            "ttproject.asgi:application"]


def _worker_argv(role: str) -> list[str]:
    return [sys.executable, "-m", "ttproject.cli", "worker", "--role", role]


def serve(role: str, args) -> int:
    if getattr(args, "api_key", None):
        os.environ["TTSTACK_API_KEY"] = args.api_key
    if getattr(args, "storage", None):
        os.environ["TTSTACK_STORAGE"] = STORAGE_ALIASES[args.storage]
    bind = "127.0.0.1" if role == "localvm" else (args.bind or os.environ.get("TTSTACK_BIND", "0.0.0.0"))
    port = args.port or int(os.environ.get("TTSTACK_PORT", DEFAULT_PORTS[role]))
    os.environ["TTSTACK_PORT"] = str(port)
    _setup(role)
    _prepare(role)
    _migrate(role)
    sup = Supervisor()
    sup.spawn(f"{role} web", _daphne_argv(bind, port))
    if role in ("controller", "localvm") and not getattr(args, "no_worker", False):
        sup.spawn(f"{role} worker", _worker_argv(role))
    print(f"ttstack {role} listening on http://{bind}:{port}/", flush=True)
    return sup.wait()


def worker(args) -> int:
    _setup(args.role)
    _migrate(args.role)
    from ttproject.tasks.runner import requeue_orphans

    requeue_orphans()
    sup = Supervisor()
    manage = [sys.executable, "-m", "ttproject.cli", "manage", args.role]
    sup.spawn(f"{args.role} jobs", [*manage, "qcluster"])
    if args.role == "controller":
        # The controller's workers also run the fleet loop (heartbeat, expiry, retried deletes); a lease row
        # lets only one loop act when several workers run, and another takes over if it dies.
        sup.spawn("controller fleet loop", [*manage, "fleet_loop"])
    # django-q replaces a worker it killed (task timeout) or that crashed; its task is handed out again.
    return sup.wait(every=30, tick=_requeue_quietly)


def _requeue_quietly():
    from django.db import close_old_connections

    from ttproject.tasks.runner import requeue_orphans

    try:
        requeue_orphans()
    except Exception as exc:  # a database hiccup must not take the workers down
        print(f"ttstack: requeue of orphaned tasks failed: {exc}", file=sys.stderr)
    finally:
        close_old_connections()


def _wait_http(url: str, timeout: float = 60) -> bool:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return True
        except httpx.HTTPError:
            time.sleep(0.3)
    return False


def up(args) -> int:
    """The main job on one machine: controller + worker + a local agent, the host registered."""
    import httpx

    data_dir = Path(os.environ.get("TTSTACK_DATA_DIR", _default_data_dir())).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    key_file = data_dir / "api_key"
    key = args.api_key or os.environ.get("TTSTACK_API_KEY")
    if not key:
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(24) + "\n")
            key_file.chmod(0o600)
        key = key_file.read_text().strip()
    env = dict(os.environ, TTSTACK_API_KEY=key, TTSTACK_DATA_DIR=str(data_dir))
    me = [sys.executable, "-m", "ttproject.cli"]
    sup = Supervisor()
    sup.spawn("agent", [*me, "agent", "--port", str(args.agent_port)],
              env=dict(env, TTSTACK_DATA_DIR=str(data_dir / "agent")))
    sup.spawn("controller", [*me, "controller", "--port", str(args.port)], env=env)
    signal.signal(signal.SIGTERM, sup.stop)
    signal.signal(signal.SIGINT, sup.stop)
    controller = f"http://127.0.0.1:{args.port}"
    agent_addr = f"127.0.0.1:{args.agent_port}"
    if not (_wait_http(f"{controller}/api/health") and _wait_http(f"http://{agent_addr}/api/health")):
        print("ttstack: the controller or the agent did not come up", file=sys.stderr)
        sup.stop()
        return 1
    reply = httpx.post(f"{controller}/api/hosts", json={"addr": agent_addr},
                       headers={"Authorization": f"Bearer {key}"}, timeout=30)
    if reply.status_code not in (200, 201, 409):
        print(f"ttstack: registering the local agent failed: {reply.status_code} {reply.text}",
              file=sys.stderr)
    print(
        f"\nttstack is running.\n  dashboard: {controller}/\n  API:       {controller}/api/ "
        f"(docs at {controller}/api/docs/)\n  API key:   {key}\n  local host: {agent_addr}\n"
        f"  try: curl -H 'Authorization: Bearer {key}' {controller}/api/status\n",
        flush=True,
    )
    return sup.wait()


def image(args) -> int:
    _setup("agent")
    from agent.imagebuild import ENGINES_OF, build
    from agent.imagebuild.steps import BuildError

    for engine in [args.engine] if args.engine else ENGINES_OF[args.kind]:
        try:
            print(build(args.kind, force=args.force, engine=engine, log=lambda line: print(line, flush=True)),
                  flush=True)
        except (BuildError, ValueError) as exc:
            print(f"ttstack image build {args.kind}: {exc}", file=sys.stderr)
            return 1
    return 0


def manage(args) -> int:
    _setup(args.role)
    from django.core.management import execute_from_command_line

    execute_from_command_line(["ttstack manage", *args.args])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ttstack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    for role in ("controller", "agent", "localvm"):
        p = sub.add_parser(role, help=f"run the {role} (daphne" + (" + worker)" if role != "agent" else ")"))
        p.add_argument("--port", type=int, default=None, help=f"default {DEFAULT_PORTS[role]}")
        if role != "localvm":
            p.add_argument("--bind", default=None, help="listen address (default 0.0.0.0)")
            p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /api/*")
        else:
            p.set_defaults(bind=None)
        if role == "agent":
            p.add_argument("--storage", choices=sorted(STORAGE_ALIASES), default=None,
                           help="disk storage: file (alias raw) or zvol (alias zfs)")
        if role in ("controller", "localvm"):
            p.add_argument("--no-worker", action="store_true", help="do not start a worker (scale-out)")
        p.set_defaults(func=lambda a, r=role: serve(r, a))

    p = sub.add_parser("worker", help="run a role's job workers (django-q2; for the controller also the fleet loop)")
    p.add_argument("--role", choices=["controller", "localvm"], default="controller")
    p.set_defaults(func=worker)

    p = sub.add_parser("up", help="controller + worker + local agent on this machine")
    p.add_argument("--port", type=int, default=9200)
    p.add_argument("--agent-port", type=int, default=9100)
    p.add_argument("--api-key", default=None)
    p.set_defaults(func=up)

    p = sub.add_parser("image", help="build images for the agent")
    isub = p.add_subparsers(dest="image_command", required=True)
    from agent.imagebuild import KINDS

    b = isub.add_parser("build", help="build one of ttstack's images (docs/images.md)")
    b.add_argument("kind", choices=KINDS)
    b.add_argument("--engine", choices=["qemu", "docker"], default=None,
                   help="only the image for this engine (default: every engine the image exists for)")
    b.add_argument("--force", action="store_true")
    b.set_defaults(func=image)

    p = sub.add_parser("manage", help="run a manage.py command for a role")
    p.add_argument("role", choices=["controller", "agent", "localvm"])
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=manage)

    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
