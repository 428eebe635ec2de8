"""Every environment variable of every role, in one place: setting, type, default, meaning.

docs/settings.md is generated from these declarations (`python -m ttproject.settings`).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ttproject.exposure import allowed_hosts
from ttproject.vocabulary import DEFAULT_PORTS, ENGINES, default_data_dir

from .catalogue import Group, Values
from .catalogue import Variable as V

ROLES = tuple(DEFAULT_PORTS)
BHYVE_UEFI = Path("/usr/local/share/uefi-firmware/BHYVE_UEFI.fd")
JAIL_TEMPLATES = Path("/usr/local/ttstack/jail-templates")


def generated_secret_key(values: Values) -> str:
    """DATA_DIR/secret_key, made on first start (0600 from the moment it exists)."""
    data_dir: Path = values["DATA_DIR"]
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _build_cache_dir(values: Values) -> Path:
    if os.geteuid() == 0:
        return Path("/var/cache/ttstack")
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ttstack"


def _tool(env: str, program: str, doc: str) -> V:
    return V(env, "AGENT_" + env.removeprefix("TTSTACK_"), "string", None, doc,
             default_doc=f"`{program}` on PATH")


SHARED = Group("Every role", "Read by the controller, the agent and localvm alike.", (
    V("TTSTACK_ROLE", "ROLE", "string", "controller", "which role this process plays; `ttstack ROLE` sets it",
      choices=ROLES),
    V("TTSTACK_DATA_DIR", "DATA_DIR", "path", lambda v: default_data_dir(),
      "SQLite files, secret key, API key, the agent's disks and images",
      default_doc="`/var/lib/ttstack` as root, else `~/.ttstack`"),
    V("TTSTACK_SECRET_KEY", "SECRET_KEY", "string", generated_secret_key, "Django's secret key",
      default_doc="generated into `DATA_DIR/secret_key` (0600)"),
    V("TTSTACK_DEBUG", "DEBUG", "boolean", False, "Django debug mode (never in production); the client shows tracebacks with it"),
    V("TTSTACK_LOG_LEVEL", "LOG_LEVEL", "string", "INFO", "level of the root logger"),
    V("TTSTACK_API_KEY", "API_KEY", "string", None,
      "operators' key, sent as `Authorization: Bearer KEY`; unset leaves the controller and agent API open "
      "(`--api-key` sets it; localvm uses its own token)"),
    V("TTSTACK_BIND", "BIND_ADDR", "string", "0.0.0.0",
      "listen address (`--bind`); localvm always 127.0.0.1"),
    V("TTSTACK_PORT", "PORT", "integer", lambda v: DEFAULT_PORTS[v["ROLE"]], "listen port (`--port`)",
      default_doc="controller 9200, agent 9100, localvm 8000"),
    V("TTSTACK_ALLOWED_HOSTS", "ALLOWED_HOSTS", "list", lambda v: allowed_hosts(v["BIND_ADDR"], None),
      "Host names the controller and agent accept, e.g. the proxy's name when one forwards to a loopback "
      "address (localvm: loopback names only; docs/security.md)",
      default_doc="bound to loopback: `localhost,127.0.0.1,[::1]`; bound elsewhere: any"),
    V("TTSTACK_INSECURE_NO_AUTH", "INSECURE_NO_AUTH", "boolean", False,
      "serve without a key on a non-loopback address; set by `--insecure-no-auth` (docs/security.md)"),
    V("TTSTACK_CSRF_TRUSTED_ORIGINS", "CSRF_TRUSTED_ORIGINS", "list", [],
      "origins allowed to post forms when the controller sits behind a proxy"),
    V("DATABASE_URL", "DATABASE_URL", "string", None, "database URL (e.g. `postgresql://user@host/db`)",
      default_doc="SQLite file `DATA_DIR/ROLE.sqlite3`"),
    V("TTSTACK_DB_CONN_MAX_AGE", "DB_CONN_MAX_AGE", "integer", 0,
      "seconds a database connection is kept open (0: one per request)"),
    V("REDIS_URL", "REDIS_URL", "string", None,
      "Redis for the channel layer (WebSocket hints across processes) and the job broker"),
    V("TTSTACK_QUEUE", "QUEUE", "string", lambda v: "redis" if v["REDIS_URL"] else "orm",
      "job broker; `redis` needs REDIS_URL", default_doc="`redis` when REDIS_URL is set, else `orm`",
      choices=("redis", "orm")),
    V("TTSTACK_QUEUE_NAME", "QUEUE_NAME", "string", lambda v: f"ttstack-{v['ROLE']}",
      "queue name; separates deployments that share one Redis", default_doc="`ttstack-ROLE`"),
    V("TTSTACK_WORKERS", "WORKERS", "integer", 4, "django-q2 worker processes"),
    V("TTSTACK_TASK_TIMEOUT", "TASK_TIMEOUT", "integer", lambda v: 3700 if v["ROLE"] == "localvm" else 3600,
      "seconds a job may run; django-q2's `retry` is set 120 s above it, and a task whose worker died is "
      "handed out again (at most 3 times)", default_doc="3600 (localvm 3700)"),
    V("TTSTACK_WORKER_TIMEOUT", "WORKER_TIMEOUT", "seconds", 30.0,
      "a job worker whose heartbeat row is older than this is lost: its running tasks are handed to another "
      "worker (at most 3 times), on whatever machine it ran; it beats every third of this"),
    V("TTSTACK_TASK_PENDING_TIMEOUT", "TASK_PENDING_TIMEOUT", "seconds", 120.0,
      "a task no worker has taken for this long is reported in its log and the workers' (no worker on its "
      "queue, or one with another TTSTACK_SECRET_KEY)"),
    V("TTSTACK_TASK_POLL", "TASK_POLL_INTERVAL", "seconds", 0.25,
      "how often a WebSocket watcher re-reads its task row"),
    V("TTSTACK_TASKS_SYNC", "TASKS_SYNC", "boolean", False, "run jobs inline, without a worker (unit tests)"),
    V("TTSTACK_EXTRA_JOB_MODULES", "EXTRA_JOB_MODULES", "list", [],
      "more modules with `@job` functions to load (used by the tests)"),
    V("TTSTACK_SSH_READY_TIMEOUT", "SSH_READY_TIMEOUT", "seconds", 300.0,
      "how long a started VM with guest port 22 may take to offer an SSH banner and host key: the agent "
      "checks that long, and the controller fails the environment after it, with the tail of the VM's "
      "console as the reason (docs/readiness.md)"),
))

CONTROLLER = Group("Controller (`ttstack controller`)", "The fleet: hosts, environments, the fleet loop.", (
    V("TTSTACK_HEARTBEAT", "FLEET_HEARTBEAT", "seconds", 5.0, "seconds between two polls of every agent"),
    V("TTSTACK_HOST_TIMEOUT", "FLEET_HOST_TIMEOUT", "seconds", 10.0,
      "a host silent for this long is marked offline (must exceed the heartbeat)"),
    V("TTSTACK_ORPHAN_GRACE", "FLEET_ORPHAN_GRACE", "seconds", 60.0,
      "how long a VM that no environment owns may live on an agent before the controller destroys it"),
    V("TTSTACK_DEFAULT_LIFETIME", "FLEET_DEFAULT_LIFETIME", "whole seconds", 21600,
      "lifetime of an environment whose request has none; 0 = never expires"),
    V("TTSTACK_MAX_LIFETIME", "FLEET_MAX_LIFETIME", "whole seconds", 7 * 86400,
      "longest lifetime an owner may ask for, at create and extend (default 7 days); operators have no limit"),
    V("TTSTACK_OWNERS_NEVER_EXPIRE", "FLEET_OWNERS_NEVER_EXPIRE", "boolean", False,
      "owners may ask for `lifetime: 0` (never expires); otherwise only operators may"),
    V("TTSTACK_EXPIRY_WARNING", "FLEET_EXPIRY_WARNING", "seconds", 3600.0,
      "an `env.expiry_warning` event is recorded this long before an environment expires"),
    V("TTSTACK_STOPPED_GRACE", "FLEET_STOPPED_GRACE", "seconds", 86400.0,
      "`on_expiry: stop`: how long an expired, stopped environment keeps its disks before it is deleted"),
    V("TTSTACK_EVENT_RETENTION", "FLEET_EVENT_RETENTION", "seconds", 30 * 86400.0,
      "events older than this are pruned (default 30 days)"),
    V("TTSTACK_EVENT_POLL", "FLEET_EVENT_POLL", "seconds", 0.25,
      "how often a `/ws/events` subscriber re-reads the event table (without Redis the only way events of "
      "the worker reach it)"),
    V("TTSTACK_PLACEMENT", "FLEET_PLACEMENT", "string", "best-fit",
      "`best-fit` fills the fullest host that fits, `spread` the emptiest (checked at start)"),
    V("TTSTACK_CPU_OVERCOMMIT", "FLEET_CPU_OVERCOMMIT", "number", 2.0,
      "vCPUs placed per host CPU (1: no overcommit). Default 2: a vCPU of a test VM is mostly idle, and "
      "a 2-core host then takes the README's example (docs/readiness.md, \"Capacity\")"),
    V("TTSTACK_AGENT_TIMEOUT", "FLEET_AGENT_TIMEOUT", "seconds", 10.0,
      "wait for an agent's answer to short calls"),
    V("TTSTACK_AGENT_CREATE_TIMEOUT", "FLEET_AGENT_CREATE_TIMEOUT", "seconds", 600.0,
      "wait for an agent to create one VM"),
    V("TTSTACK_FLEET_TICK", "FLEET_TICK", "seconds", 1.0, "seconds between two rounds of the fleet loop "
      "(expiry, retries)"),
    V("TTSTACK_DELETE_RETRY", "FLEET_DELETE_RETRY", "seconds", 20.0,
      "how long a delete job retries unreachable agents before leaving the rest to the fleet loop"),
    V("TTSTACK_AGENT_PARALLEL", "FLEET_AGENT_PARALLEL", "integer", 8,
      "agent calls one job, or one heartbeat round, makes at once (one thread each, each with at most one "
      "database connection): a worker process holds at most 1 + this many connections (docs/scaling.md)"),
))

AGENT = Group("Agent (`ttstack agent`)", "VMs on this host: engines, storage, ports.", (
    V("TTSTACK_IMAGE_DIR", "AGENT_IMAGE_DIR", "path", None,
      "image directory of the file storage; its layout is in agent/storage/image_dir.py", default_doc="`DATA_DIR/images`"),
    V("TTSTACK_STORAGE", "AGENT_STORAGE", "string", "file",
      "disk storage: `file` (alias `raw`) or `zvol` (alias `zfs`; refused at start when ZFS does not work)"),
    V("TTSTACK_PUBLISH_ADDR", "AGENT_PUBLISH_ADDR", "string", "0.0.0.0",
      "host address guest ports are published on (the tests use 127.0.0.1)"),
    V("TTSTACK_PORT_RANGE", "AGENT_PORT_RANGE", "port range", (20000, 65535), "host ports handed to guests"),
    V("TTSTACK_NETWORK_POOL", "AGENT_NETWORK_POOL", "string", "10.211.0.0/16",
      "IPv4 range environment networks take their /24 subnets from (docs/networks.md)"),
    V("TTSTACK_DOCKER_URL", "AGENT_DOCKER_URL", "string", None, "docker daemon",
      default_doc="DOCKER_HOST, else the local socket"),
    V("TTSTACK_LIBVIRT_URI", "AGENT_LIBVIRT_URI", "string", "qemu:///system",
      "libvirt connection of the qemu engine"),
    V("TTSTACK_QEMU_ACCEL", "AGENT_QEMU_ACCEL", "string", "auto",
      "`auto` (probe KVM, else TCG), `kvm` or `tcg`", choices=("auto", "kvm", "tcg")),
    V("TTSTACK_STOP_TIMEOUT", "AGENT_STOP_TIMEOUT", "seconds", 30.0,
      "how long a graceful stop may take before the guest is forced off"),
    V("TTSTACK_ENGINES", "AGENT_ENGINES", "list", list(ENGINES),
      "the engines this agent offers (each still has to pass its probe)", default_doc="all"),
    V("TTSTACK_KVM_PROBE_TIMEOUT", "AGENT_KVM_PROBE_TIMEOUT", "seconds", 6.0,
      "how long the KVM probe guest may take to prove KVM works"),
    V("TTSTACK_CACHE_DIR", "AGENT_CACHE_DIR", "path", _build_cache_dir,
      "image build cache: downloaded Debian packages and finished images (docs/images.md)",
      default_doc="`/var/cache/ttstack` as root, else `$XDG_CACHE_HOME/ttstack` (`~/.cache/ttstack`)"),
    V("TTSTACK_DEBIAN_MIRROR", "AGENT_DEBIAN_MIRROR", "url", None,
      "Debian mirror the debian-12 images are built from", default_doc="the Debian archive of this "
      "machine's apt sources"),
    V("TTSTACK_IMAGE_FETCH_ATTEMPTS", "AGENT_IMAGE_FETCH_ATTEMPTS", "integer", 3,
      "connections an image import makes before it fails: after a cut it resumes where it stopped (HTTP Range)"),
    V("TTSTACK_IMAGE_TICKET_TTL", "AGENT_IMAGE_TICKET_TTL", "seconds", 900.0,
      "how long a ticket to download an image from this agent (agent-to-agent spread) stays valid"),
    V("TTSTACK_ENGINE_PROBES", None, "string", None,
      "internal: `ttstack agent` hands its start-up probe results to the web process in it"),
))

ENGINE_OPTIONS = Group(
    "Agent: engines other than qemu and docker, and zvol storage",
    "Settings named `AGENT_` + the variable without `TTSTACK_`; `agent.conf.option(VARIABLE)` reads one. "
    "Also see docs/engines.md.", (
        _tool("TTSTACK_QEMU_BIN", "qemu-system-x86_64", "qemu binary of the KVM probe"),
        _tool("TTSTACK_FIRECRACKER_BIN", "firecracker", "firecracker binary"),
        _tool("TTSTACK_JAILER_BIN", "jailer", "firecracker's jailer binary"),
        V("TTSTACK_FIRECRACKER_JAILER", "AGENT_FIRECRACKER_JAILER", "boolean", None,
          "run firecracker under its jailer", default_doc="when the jailer binary is found"),
        V("TTSTACK_JAILER_UID", "AGENT_JAILER_UID", "integer", 65534, "uid the jailer drops to"),
        V("TTSTACK_JAILER_GID", "AGENT_JAILER_GID", "integer", 65534, "gid the jailer drops to"),
        V("TTSTACK_JAILER_CHROOT_BASE", "AGENT_JAILER_CHROOT_BASE", "path", Path("/srv/jailer"),
          "the jailer's chroot base", default_doc="`/srv/jailer`"),
        V("TTSTACK_FIRECRACKER_RUN_DIR", "AGENT_FIRECRACKER_RUN_DIR", "path", None,
          "sockets, logs and pid files of firecracker guests", default_doc="`DATA_DIR/firecracker`"),
        V("TTSTACK_FIRECRACKER_SUBNET", "AGENT_FIRECRACKER_SUBNET", "string", "172.30.0.0/16",
          "firecracker guests get a /30 each from it"),
        _tool("TTSTACK_IP_BIN", "ip", "iproute2's ip (firecracker taps)"),
        _tool("TTSTACK_IPTABLES_BIN", "iptables", "iptables (firecracker ports and deny_outgoing)"),
        _tool("TTSTACK_BHYVE_BIN", "bhyve", "bhyve binary"),
        _tool("TTSTACK_BHYVELOAD_BIN", "bhyveload", "bhyveload binary"),
        _tool("TTSTACK_BHYVECTL_BIN", "bhyvectl", "bhyvectl binary"),
        V("TTSTACK_BHYVE_BRIDGE", "AGENT_BHYVE_BRIDGE", "string", "bridge0",
          "bridge the bhyve guests' taps join"),
        V("TTSTACK_BHYVE_SUBNET", "AGENT_BHYVE_SUBNET", "string", "10.77.0.0/24",
          "bhyve guest addresses (the bridge holds .1)"),
        V("TTSTACK_BHYVE_UEFI", "AGENT_BHYVE_UEFI", "path", BHYVE_UEFI,
          "UEFI firmware for images whose loader is uefi", default_doc=f"`{BHYVE_UEFI}`"),
        V("TTSTACK_BHYVE_RUN_DIR", "AGENT_BHYVE_RUN_DIR", "path", None,
          "pid files and logs of bhyve guests", default_doc="`DATA_DIR/bhyve`"),
        V("TTSTACK_DHCP_HOSTSFILE", "AGENT_DHCP_HOSTSFILE", "path", None,
          "file the bhyve engine writes `MAC,IP,HOSTNAME` lines to, for the operator's DHCP server"),
        _tool("TTSTACK_JAIL_BIN", "jail", "jail binary"),
        _tool("TTSTACK_JLS_BIN", "jls", "jls binary"),
        _tool("TTSTACK_JEXEC_BIN", "jexec", "jexec binary"),
        V("TTSTACK_JAIL_TEMPLATE_DIR", "AGENT_JAIL_TEMPLATE_DIR", "path", JAIL_TEMPLATES,
          "jail images: one root tree per image", default_doc=f"`{JAIL_TEMPLATES}`"),
        V("TTSTACK_JAIL_ROOT_DIR", "AGENT_JAIL_ROOT_DIR", "path", Path("/usr/local/ttstack/jails"),
          "roots of the jails (a copy of their template)", default_doc="`/usr/local/ttstack/jails`"),
        V("TTSTACK_JAIL_RUN_DIR", "AGENT_JAIL_RUN_DIR", "path", None,
          "state files of the jails", default_doc="`DATA_DIR/jail`"),
        V("TTSTACK_JAIL_IF", "AGENT_JAIL_IF", "string", "lo1", "interface holding the jails' addresses"),
        V("TTSTACK_JAIL_SUBNET", "AGENT_JAIL_SUBNET", "string", "10.78.0.0/24", "jail addresses"),
        _tool("TTSTACK_IFCONFIG_BIN", "ifconfig", "ifconfig (bhyve taps, jail addresses)"),
        _tool("TTSTACK_PFCTL_BIN", "pfctl", "pfctl (bhyve and jail ports, deny_outgoing)"),
        V("TTSTACK_PF_ANCHOR", "AGENT_PF_ANCHOR", "string", "ttstack",
          "pf anchor holding one sub-anchor per guest"),
        V("TTSTACK_PF_EXT_IF", "AGENT_PF_EXT_IF", "string", None, "interface the pf rdr rules apply on",
          default_doc="any"),
        _tool("TTSTACK_ZFS_BIN", "zfs", "zfs binary (zvol storage)"),
        V("TTSTACK_ZFS_POOL", "AGENT_ZFS_POOL", "string", None,
          "pool of the zvol storage (dataset POOL/ttstack)"),
        V("TTSTACK_ZFS_DATASET", "AGENT_ZFS_DATASET", "string", None, "dataset of the zvol storage",
          default_doc="`ZFS_POOL/ttstack`"),
        V("TTSTACK_ZVOL_DEV_DIR", "AGENT_ZVOL_DEV_DIR", "path", Path("/dev/zvol"),
          "where zvols appear as devices", default_doc="`/dev/zvol`"),
    ))

# de taartenfabriek's tart timeouts (seconds), one variable per command.
TART_TIMEOUTS = {"list": 5, "get": 10, "ip": 4, "stop": 40, "delete": 60, "pull": 3600, "clone": 120,
                 "set": 30, "version": 5}

LOCALVM = Group("localvm (`ttstack localvm`)", "The `tart` CLI on a Mac, on 127.0.0.1 only.", (
    V("TTSTACK_TART_BIN", "LOCALVM_TART_BIN", "string", "tart", "path or name (looked up on PATH) of tart"),
    V("TTSTACK_TOKEN_DIR", "LOCALVM_TOKEN_DIR", "path", lambda v: Path.home() / ".tartvm-manager",
      "directory (0700) of the `token` file (0600) the API and the page need",
      default_doc="`~/.tartvm-manager`"),
    V("TTSTACK_GITHUB_API", "LOCALVM_GITHUB_API", "url", "https://api.github.com",
      "GitHub REST API base URL (the tests point it at a local fake)"),
    V("TTSTACK_GITHUB_ORG", "LOCALVM_GITHUB_ORG", "string", "cirruslabs", "owner of the macOS images"),
    V("TTSTACK_GITHUB_TIMEOUT", "LOCALVM_GITHUB_TIMEOUT", "seconds", 15.0, "timeout of one GitHub request"),
    V("TTSTACK_GITHUB_CACHE_TTL", "LOCALVM_GITHUB_CACHE_TTL", "seconds", 300.0,
      "how long the image catalogue is cached"),
    V("TTSTACK_GITHUB_MAX_PAGES", "LOCALVM_GITHUB_MAX_PAGES", "integer", 20,
      "Link pages followed per listing"),
    V("TTSTACK_CONFIG_CACHE_TTL", "LOCALVM_CONFIG_CACHE_TTL", "seconds", 60.0,
      "how long a VM's `tart get` config is served from the cache (`?force_refresh=true` skips it)"),
    V("TTSTACK_INVENTORY_WORKERS", "LOCALVM_INVENTORY_WORKERS", "integer", 32,
      "parallel `tart ip` calls during a refresh"),
    V("TTSTACK_START_POLL", "LOCALVM_START_POLL", "seconds", 1.5,
      "pause between `tart ip` polls after `tart run`"),
    V("TTSTACK_START_WAIT", "LOCALVM_START_WAIT", "seconds", 60.0, "how long a start waits for the VM's IP"),
    V("TTSTACK_TASK_KEEP", "LOCALVM_TASK_KEEP", "integer", 500, "finished tasks kept at most"),
    V("TTSTACK_TASK_KEEP_DAYS", "LOCALVM_TASK_KEEP_DAYS", "number", 7.0,
      "finished tasks older than this many days are pruned"),
    *(V(f"TTSTACK_TART_TIMEOUT_{cmd.upper()}", f"LOCALVM_TART_TIMEOUT_{cmd.upper()}", "seconds",
        float(seconds), f"timeout of `tart {'--version' if cmd == 'version' else cmd}`")
      for cmd, seconds in TART_TIMEOUTS.items()),
))

CLIENT = Group("Client (`ttstack env`, `ttstack host`, ...)",
               "Read by the command-line client, never by a server; they override the profile of "
               "`~/.config/ttstack/config.toml` (`ttstack login` writes it).", (
    V("TTSTACK_URL", None, "url", None, "controller URL", default_doc="the profile's"),
    V("TTSTACK_TOKEN", None, "string", None, "token sent as `Authorization: Bearer TOKEN`",
      default_doc="the profile's"),
    V("TTSTACK_PROFILE", None, "string", None, "profile of the config file to use (`--profile` overrides it)",
      default_doc="the config's `default_profile`, else `default`"),
))

IMAGES = Group("Inside ttstack's images", "Read by the entry of a container of ttstack's docker images "
               "(docs/images.md), not by ttstack.", (
    V("TTSTACK_SSH_KEYS", None, "string", None,
      "SSH public keys, one per line, installed for root and the default user at every start "
      "(beside /run/ttstack/authorized_keys)"),
))

GROUPS = (SHARED, CONTROLLER, AGENT, ENGINE_OPTIONS, LOCALVM, CLIENT, IMAGES)
VARIABLES = tuple(variable for group in GROUPS for variable in group.variables)
