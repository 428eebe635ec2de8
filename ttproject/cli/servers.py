"""The server commands: start a role, its worker, or the whole local stack; build images; run manage commands.

    ttstack controller [--port 9200] [--bind ADDR] [--api-key KEY] [--no-worker] [--insecure-no-auth]
    ttstack worker [--role controller|localvm]
    ttstack agent [--port 9100] [--bind ADDR] [--api-key KEY | --make-key] [--storage file|raw|zvol|zfs]
                  [--insecure-no-auth]
    ttstack localvm [--port 8000] [--no-worker]
    ttstack up                     controller + worker + local agent, host registered, key printed
    ttstack image build tiny|docker-tiny|debian-12 [--engine qemu|docker] [--force]
    ttstack manage ROLE ARGS...    any manage.py command for that role

Everything is passed to the child processes through environment variables (see docs/settings.md).
Without a key, a role bound to an address other than loopback refuses to start (ttproject.exposure;
docs/security.md).
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from pathlib import Path

import click

from agent.imagebuild import KINDS as IMAGE_KINDS
from ttproject import exposure
from ttproject.datadir import let_others_traverse, private_database, private_dir
from ttproject.vocabulary import DEFAULT_PORTS, STORAGE_ALIASES, default_data_dir

from .supervisor import Supervisor

ME = [sys.executable, "-m", "ttproject.cli"]


def _setup(role: str):
    os.environ["TTSTACK_ROLE"] = role
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ttproject.settings")
    data_dir()  # made 0700 before the settings look at it
    import django

    django.setup()
    private_database()


def _migrate():
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


def _daphne_argv(bind: str, port: int) -> list[str]:
    return [sys.executable, "-m", "daphne", "-b", bind, "-p", str(port), "--proxy-headers",
            "ttproject.asgi:application"]


def data_dir() -> Path:
    """This process's data dir, made 0700 when it does not exist yet."""
    return private_dir(Path(os.environ.get("TTSTACK_DATA_DIR") or default_data_dir()).expanduser())


def agent_key(path: Path, *, make: bool) -> str | None:
    """The agent's own key from `path`; made there first (and printed, this once) with `make`."""
    if make and (key := make_key(path)):
        print(f"ttstack agent: made this agent's key into {path} (0600); it is shown only now:\n"
              f"  {key}\nRegister the host with it: ttstack host add ADDR:PORT --key {key}", flush=True)
        return key
    if path.exists():
        return read_or_make_key(path)
    return None


def _check_exposure(role: str, bind: str, port: int, key: str | None, insecure: bool) -> None:
    """Refuse (exit 2) a key-less role on a non-loopback address unless --insecure-no-auth; warn then."""
    os.environ.pop(exposure.INSECURE_ENV, None)
    if key or role == "localvm":
        return
    if insecure:
        os.environ[exposure.INSECURE_ENV] = "1"
        print(f"ttstack {role}: WARNING {exposure.insecure_warning(bind, port)}", file=sys.stderr, flush=True)
    elif not exposure.is_loopback(bind):
        print(exposure.refusal(role, bind, port), file=sys.stderr, flush=True)
        sys.exit(2)


def serve(role: str, *, port: int | None, bind: str | None = None, api_key: str | None = None,
          storage: str | None = None, no_worker: bool = False, insecure_no_auth: bool = False,
          make_agent_key: bool = False) -> int:
    if storage:
        os.environ["TTSTACK_STORAGE"] = STORAGE_ALIASES[storage]
    bind = "127.0.0.1" if role == "localvm" else (bind or os.environ.get("TTSTACK_BIND", "0.0.0.0"))
    port = port or int(os.environ.get("TTSTACK_PORT", DEFAULT_PORTS[role]))
    os.environ["TTSTACK_PORT"], os.environ["TTSTACK_BIND"] = str(port), bind
    here = data_dir()
    key = api_key or os.environ.get("TTSTACK_API_KEY") or None
    if role == "agent" and not key:
        key = agent_key(here / "api_key", make=make_agent_key)
    if key and role != "localvm":
        os.environ["TTSTACK_API_KEY"] = key
    _check_exposure(role, bind, port, key, insecure_no_auth)
    _setup(role)
    _prepare(role)
    _migrate()
    _check_signing_key(role)
    sup = Supervisor()
    sup.spawn(f"{role} web", _daphne_argv(bind, port))
    if role in ("controller", "localvm") and not no_worker:
        # A crashed worker is started again (with backoff) while the web process keeps serving.
        sup.spawn(f"{role} worker", [*ME, "worker", "--role", role], restart=True)
    print(f"ttstack {role} listening on http://{bind}:{port}/", flush=True)
    if role == "localvm":
        from localvm import page_login

        page_login.forget_unused()
        print(f"  open the page (this link signs in one browser, once): {page_login.login_url(port)}",
              flush=True)
    return sup.wait()


PORT = click.option("--port", type=int, default=None, help="listen port")
BIND = click.option("--bind", default=None, help="listen address (default 0.0.0.0)")
API_KEY = click.option("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /api/*")
NO_WORKER = click.option("--no-worker", is_flag=True, help="do not start a worker (scale-out)")
INSECURE = click.option("--insecure-no-auth", is_flag=True,
                        help="serve without a key on a non-loopback address (anyone who reaches it has full "
                             "control); refused without this flag")


@click.command(short_help="Run the controller (web + worker).", help="Run the controller (daphne + worker; default port 9200).")
@PORT
@BIND
@API_KEY
@NO_WORKER
@INSECURE
def controller(port, bind, api_key, no_worker, insecure_no_auth):
    sys.exit(serve("controller", port=port, bind=bind, api_key=api_key, no_worker=no_worker,
                   insecure_no_auth=insecure_no_auth))


@click.command(help="Run the agent of this host (daphne; default port 9100). Its key: --api-key, else "
                    "DATA_DIR/api_key (--make-key makes it on first start and prints it once).")
@PORT
@BIND
@API_KEY
@click.option("--make-key", is_flag=True,
              help="make this agent's own key into DATA_DIR/api_key (0600) unless it is there; printed once")
@click.option("--storage", type=click.Choice(sorted(STORAGE_ALIASES)), default=None,
              help="disk storage: file (alias raw) or zvol (alias zfs)")
@INSECURE
def agent(port, bind, api_key, make_key, storage, insecure_no_auth):
    sys.exit(serve("agent", port=port, bind=bind, api_key=api_key, storage=storage,
                   insecure_no_auth=insecure_no_auth, make_agent_key=make_key))


@click.command(short_help="Run the local Tart VM manager.", help="Run the local Tart VM manager on 127.0.0.1 (daphne + worker; default port 8000).")
@PORT
@NO_WORKER
def localvm(port, no_worker):
    sys.exit(serve("localvm", port=port, no_worker=no_worker))


@click.command(short_help="Run a role's job workers.", help="Run a role's job workers (django-q2; for the controller also the fleet loop).")
@click.option("--role", type=click.Choice(["controller", "localvm"]), default="controller", show_default=True)
def worker(role):
    _setup(role)
    _migrate()
    _check_signing_key(role)
    from ttproject.tasks.runner import requeue_orphans

    requeue_orphans()
    sup = Supervisor()
    manage_argv = [*ME, "manage", role]
    sup.spawn(f"{role} jobs", [*manage_argv, "qcluster"])
    if role == "controller":
        # The controller's workers also run the fleet loop (heartbeat, expiry, retried deletes); a lease row
        # lets only one loop act when several workers run, and another takes over if it dies.
        sup.spawn("controller fleet loop", [*manage_argv, "fleet_loop"])
    # django-q replaces a worker it killed (task timeout) or that crashed; its task is handed out again.
    # Every 10 s: tasks of lost workers (pid gone here, heartbeat stale anywhere) handed back.
    sys.exit(sup.wait(every=10, tick=_requeue_quietly))


def _check_signing_key(role: str):
    """Refuse (exit 2) to start with a secret key other than the one this database's processes use."""
    from ttproject.tasks.workers import check_signing_key

    if why := check_signing_key():
        print(f"ttstack {role}: {why}", file=sys.stderr, flush=True)
        sys.exit(2)


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


def read_or_make_key(path: Path) -> str:
    """The key kept in `path` (the operators' key of `ttstack up`, an agent's own key), made on first use."""
    if key := make_key(path):
        return key
    key = path.read_text().strip()
    if not key:
        raise click.ClickException(f"{path} is empty: remove it to make a new key")
    return key


def make_key(path: Path) -> str | None:
    """A new key written to `path`, or None when the file exists. The file is created 0600 in the same call
    that creates it (O_EXCL: never an existing file or a planted symlink), so the key is never readable
    by others, not even for a moment; a failed write leaves no file behind."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    key = secrets.token_urlsafe(24)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
    except OSError:
        path.unlink(missing_ok=True)
        raise
    return key


@click.command(short_help="Controller + worker + local agent here.", help="Controller + worker + a local agent on this machine, the host registered.")
@click.option("--port", type=int, default=9200, show_default=True, help="controller port")
@click.option("--agent-port", type=int, default=9100, show_default=True)
@click.option("--api-key", default=None, help="operators' key (default: DATA_DIR/api_key, made on first run)")
def up(port, agent_port, api_key):
    import httpx

    here = data_dir()
    agent_dir = here / "agent"
    agent_dir.mkdir(exist_ok=True, mode=0o700)
    key = api_key or os.environ.get("TTSTACK_API_KEY") or read_or_make_key(here / "api_key")
    env = dict(os.environ, TTSTACK_API_KEY=key, TTSTACK_DATA_DIR=str(here))
    # The agent has a key of its own (never the operators'), made into its data dir on first start.
    agent_env = {k: v for k, v in env.items() if k != "TTSTACK_API_KEY"}
    sup = Supervisor()
    sup.spawn("agent", [*ME, "agent", "--port", str(agent_port), "--make-key"],
              env=dict(agent_env, TTSTACK_DATA_DIR=str(agent_dir)))
    sup.spawn("controller", [*ME, "controller", "--port", str(port)], env=env)
    signal.signal(signal.SIGTERM, sup.stop)
    signal.signal(signal.SIGINT, sup.stop)
    url = f"http://127.0.0.1:{port}"
    agent_addr = f"127.0.0.1:{agent_port}"
    if not (_wait_http(f"{url}/api/health") and _wait_http(f"http://{agent_addr}/api/health")):
        print("ttstack: the controller or the agent did not come up", file=sys.stderr)
        sup.stop()
        sys.exit(1)
    agent_key_now = read_or_make_key(agent_dir / "api_key")
    reply = httpx.post(f"{url}/api/hosts", json={"addr": agent_addr, "api_key": agent_key_now},
                       headers={"Authorization": f"Bearer {key}"}, timeout=30)
    if reply.status_code not in (200, 201, 409):
        print(f"ttstack: registering the local agent failed: {reply.status_code} {reply.text}", file=sys.stderr)
    _let_qemu_reach_the_agent_dir(here, agent_addr, agent_key_now)
    print(
        f"\nttstack is running.\n  dashboard: {url}/\n  API:       {url}/api/ "
        f"(docs at {url}/api/docs/)\n  API key:   {key}\n  local host: {agent_addr}\n"
        f"  try: ttstack login {url}          (paste the key when asked)\n"
        f"       curl -H 'Authorization: Bearer {key}' {url}/api/status\n",
        flush=True,
    )
    sys.exit(sup.wait())


def _let_qemu_reach_the_agent_dir(here: Path, agent_addr: str, agent_key: str) -> None:
    """When the local agent runs qemu: qemu runs as libvirt's user and must walk down to the VM disks below
    `here` too, so `here` gets search permission for others (0711, never read), as the agent gives its own
    dir (agent/startup.py). The files here stay 0600."""
    import httpx

    try:
        engines = httpx.get(f"http://{agent_addr}/api/info", headers={"Authorization": f"Bearer {agent_key}"},
                            timeout=30).json().get("engines", [])
    except (httpx.HTTPError, ValueError, AttributeError):
        return
    if "qemu" in engines:
        let_others_traverse(here)


@click.command("build", short_help="Build one of ttstack's images (tiny, docker-tiny, debian-12) here.",
               help="Build one of ttstack's images for the agent of this machine: disk images into its image "
                    "dir, docker images into its docker daemon; finished builds are kept in the build cache "
                    "(docs/images.md).")
@click.argument("kind", type=click.Choice(IMAGE_KINDS))
@click.option("--engine", type=click.Choice(["qemu", "docker"]), default=None,
              help="only the image for this engine (default: every engine the image exists for)")
@click.option("--force", is_flag=True, help="build again even if it exists")
def image_build(kind, engine, force):
    _setup("agent")
    from agent.imagebuild import ENGINES_OF, build
    from agent.imagebuild.steps import BuildError

    for each in [engine] if engine else ENGINES_OF[kind]:
        try:
            click.echo(build(kind, force=force, engine=each, log=lambda line: click.echo(line)))
        except (BuildError, ValueError) as exc:
            raise click.ClickException(f"ttstack image build {kind}: {exc}") from exc


@click.command(short_help="Run a manage.py command for a role.", help="Run a manage.py command for a role: ttstack manage ROLE ARGS...",
               context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("role", type=click.Choice(["controller", "agent", "localvm"]))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def manage(role, args):
    _setup(role)
    from django.core.management import execute_from_command_line

    execute_from_command_line(["ttstack manage", *args])


COMMANDS = (controller, agent, localvm, worker, up, manage)
