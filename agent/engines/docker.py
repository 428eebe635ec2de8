"""The docker engine: one container per VM, through the docker SDK.

- Name ``spec.name`` (``tt-<host id[:8]>-<vm id>``) and labels ``ttstack.host_id`` / ``ttstack.vm_id``:
  two agents sharing one daemon each see only their own containers; ``ttstack.controller`` names the
  controller that asked for it.
- ``nano_cpus`` and ``mem_limit`` from the spec; restart policy none; ports published as TCP on
  ``spec.publish_addr``.
- Networks (docs/networks.md): ``spec.network`` joins the env's user-defined bridge network (hostname as
  network alias, so the env's guests resolve it); without one, docker's default bridge as before.
- deny_outgoing holds from the first packet: the namespace belongs to a network holder container
  (agent/net/docker_net.py) that is started, and its namespace firewalled, before the guest's container
  starts inside it (``network_mode=container:<holder>``). Loopback and ESTABLISHED/RELATED traffic pass (so
  published ports answer), the env's peers too; everything else the guest sends is dropped. The holder owns
  the hostname, the published ports and the network endpoint. The agent must run as root (nsenter).
- SSH: images labelled as running sshd publish port 22 and get the env's keys in a read-only file
  (agent/engines/docker_ssh.py); others get the same file mounted at /root/.ssh/authorized_keys.
"""

from __future__ import annotations

import logging
import shutil
import threading

from agent.engines import docker_ssh
from agent.engines.base import MISSING, RUNNING, STOPPED, Engine, EngineError, GuestSpec, Image
from agent.image_names import check_docker_ref, docker_ref
from agent.net import docker_net

log = logging.getLogger(__name__)

LABEL_HOST = "ttstack.host_id"
LABEL_VM = "ttstack.vm_id"
LABEL_CONTROLLER = "ttstack.controller"  # the controller that asked for it (absent: made on the agent directly)
RUNNING_STATES = {"running", "restarting"}



class DockerEngine(Engine):
    name = "docker"
    image_kind = "docker"
    recheck_after = 1.0  # a ping: cheap enough to notice a dockerd that died

    @classmethod
    def from_settings(cls) -> DockerEngine:
        from agent import conf

        return cls(base_url=conf.docker_url(), host_id=conf.host_id())

    def __init__(self, base_url: str | None = None, host_id: str = "", timeout: int = 60):
        self.base_url = base_url
        self.host_id = host_id
        self.timeout = timeout
        self._client = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ client

    def client(self):
        import docker

        with self._lock:
            if self._client is None:
                try:
                    if self.base_url:
                        self._client = docker.DockerClient(base_url=self.base_url, timeout=self.timeout)
                    else:
                        self._client = docker.from_env(timeout=self.timeout)
                except docker.errors.DockerException as exc:
                    raise EngineError(f"cannot connect to docker: {exc}") from exc
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _get(self, collection: str, key: str):
        """`client.<collection>.get(key)`; None when docker has no such object."""
        import docker

        try:
            return getattr(self.client(), collection).get(key)
        except docker.errors.NotFound:  # ImageNotFound too
            return None
        except docker.errors.DockerException as exc:
            raise EngineError(f"docker: {exc}") from exc

    def _container(self, spec: GuestSpec):
        """This agent's container of `spec`, None when there is none."""
        container = self._get("containers", spec.name)
        if container is None:
            return None
        labels = container.labels or {}
        if self.host_id and labels.get(LABEL_HOST) != self.host_id:
            return None  # same name, another agent's (or nobody's) container: never touch it
        return container

    # --------------------------------------------------------------------------------------- interface

    def probe(self) -> tuple[bool, str]:
        import docker

        try:
            self.client().ping()
        except (docker.errors.DockerException, EngineError) as exc:
            self.close()
            return False, f"docker daemon not reachable: {exc}"
        except Exception as exc:  # requests' connection errors
            self.close()
            return False, f"docker daemon not reachable: {exc}"
        if not shutil.which("nsenter") or not shutil.which("iptables"):
            log.warning("docker: nsenter/iptables missing, deny_outgoing will fail")
        return True, ""

    def create(self, spec: GuestSpec) -> None:
        import docker

        if not self.can_boot(spec.image):
            raise EngineError(f"image {spec.image.name} is not a docker image")
        ports = {f"{guest}/tcp": (spec.publish_addr, host) for guest, host in spec.port_map.items()}
        labels = {LABEL_HOST: spec.host_id, LABEL_VM: spec.vm_id}
        if spec.controller:
            labels[LABEL_CONTROLLER] = spec.controller
        api = self.client().api
        if spec.deny_outgoing:
            self._start_holder(spec, ports)
        network_host_config, network_args = self._networking(spec, ports)
        # The low-level API: one call to create and one to start, as few round trips as `docker run`.
        binds = docker_ssh.keys_binds(spec)
        host_config = api.create_host_config(
            nano_cpus=int(spec.cpu * 1_000_000_000),
            mem_limit=f"{int(spec.mem)}m",
            restart_policy={"Name": "no"},
            **({"binds": binds} if binds else {}),
            **network_host_config,
        )
        kwargs = dict(image=spec.image.extra.get("ref", spec.image.name), name=spec.name, labels=labels,
                      host_config=host_config, detach=True, **network_args)
        try:
            try:
                created = api.create_container(**kwargs)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                existing = self._container(spec)  # a retried create: start over from a clean container
                if existing is None:
                    raise
                self._remove(existing)
                created = api.create_container(**kwargs)
        except docker.errors.DockerException as exc:
            raise EngineError(f"docker could not create {spec.name}: {_explain(exc)}") from exc
        try:
            api.start(created["Id"])
        except docker.errors.DockerException as exc:
            raise EngineError(f"docker could not start {spec.name}: {_explain(exc)}") from exc

    def start(self, spec: GuestSpec) -> None:
        container = self._container(spec)
        if container is None:
            raise EngineError(f"container {spec.name} does not exist")
        self._start(container, spec)

    def _start(self, container, spec: GuestSpec) -> None:
        import docker

        try:
            container.reload()
            if container.status in RUNNING_STATES:
                return
            joins_holder = _joins_holder(container)
            if joins_holder:
                self._start_holder(spec, None)
            container.start()
        except docker.errors.DockerException as exc:
            raise EngineError(f"docker could not start {spec.name}: {_explain(exc)}") from exc
        if spec.deny_outgoing and not joins_holder:  # a container made before holders: rules just after start
            container.reload()
            docker_net.load_rules(_pid(container, spec), docker_net.deny_rules(), docker_net.deny_rules(ipv6=True))

    def stop(self, spec: GuestSpec, timeout: float = 30) -> None:
        import docker

        container = self._container(spec)
        if container is None:
            return
        try:
            # docker sends the stop signal, then SIGKILL after `timeout`.
            container.stop(timeout=max(0, int(timeout)))
            self._stop_holder(spec)
        except docker.errors.NotFound:
            return
        except docker.errors.DockerException as exc:
            try:
                container.kill()
            except docker.errors.DockerException:
                raise EngineError(f"docker could not stop {spec.name}: {_explain(exc)}") from exc

    def destroy(self, spec: GuestSpec) -> None:
        container = self._container(spec)
        if container is not None:
            self._remove(container)
        holder = self._holder(spec)
        if holder is not None:
            self._remove(holder)

    def _remove(self, container) -> None:
        import docker

        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise EngineError(f"docker could not remove {container.name}: {_explain(exc)}") from exc

    def state(self, spec: GuestSpec) -> str:
        container = self._container(spec)
        if container is None:
            return MISSING
        return RUNNING if container.status in RUNNING_STATES else STOPPED

    def list_guests(self) -> dict[str, str]:
        import docker
        import requests

        filters = {"label": [f"{LABEL_HOST}={self.host_id}"] if self.host_id else [LABEL_HOST]}
        try:
            containers = self.client().containers.list(all=True, filters=filters, sparse=True)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineError(f"docker: {exc or type(exc).__name__}") from exc  # a dead dockerd: no socket
        found = {}
        for container in containers:
            attrs = container.attrs
            labels = attrs.get("Labels") or {}
            vm_id = labels.get(LABEL_VM)
            if vm_id:
                found[vm_id] = RUNNING if attrs.get("State") in RUNNING_STATES else STOPPED
        return found

    def implied_ports(self, image: Image) -> set[int]:
        return docker_ssh.ssh_ports(image)

    def console_tail(self, spec: GuestSpec, lines: int) -> tuple[str, str]:
        import docker

        container = self._container(spec)
        if container is None:
            return "docker logs", ""
        try:
            return "docker logs", container.logs(tail=lines).decode(errors="replace")
        except docker.errors.DockerException as exc:
            raise EngineError(f"docker logs {spec.name}: {_explain(exc)}") from exc

    def ip(self, spec: GuestSpec) -> str | None:
        container = self._container(spec)
        if container is not None and _joins_holder(container):
            container = self._holder(spec)
        if container is None:
            return None
        networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        for net in networks.values():
            if net.get("IPAddress"):
                return net["IPAddress"]
        return None

    def images(self) -> list[Image]:
        import docker
        import requests

        try:
            found = self.client().images.list()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineError(f"docker: {exc or type(exc).__name__}") from exc  # a dead dockerd: no socket
        images = []
        for image in found:
            for tag in image.tags:
                config = image.attrs.get("Config") or {}
                labels = config.get("Labels") or {}
                images.append(Image(
                    name=tag, engine_kind=self.image_kind, disk_format="docker", size=int(image.attrs.get("Size") or 0),
                    extra={"ref": tag, "id": image.id, "labels": labels,
                           "description": labels.get("org.opencontainers.image.description")
                           or f"docker image {tag}"},
                ))
        return images

    def find_image(self, name: str) -> Image | None:
        """One local image by reference ("ttstack/tiny" means ":latest"), without listing them all."""
        ref = docker_ref(check_docker_ref(name))
        image = self._get("images", ref)
        if image is None:
            return None
        return Image(name=ref, engine_kind=self.image_kind, disk_format="docker", size=int(image.attrs.get("Size") or 0),
                     extra={"ref": ref, "id": image.id, "labels": (image.attrs.get("Config") or {}).get("Labels") or {}})

    # --------------------------------------------------------------------------- networks and holders

    def _networking(self, spec: GuestSpec, ports: dict) -> tuple[dict, dict]:
        """(host config, create arguments) putting the guest on its network: in its holder's namespace, or
        on the env network (or docker's default bridge) with its hostname and published ports."""
        if spec.deny_outgoing:
            return {"network_mode": f"container:{docker_net.holder_name(spec.name)}"}, {}
        return docker_net.endpoint(self.client().api, spec, ports, _docker_hostname(spec.hostname or spec.vm_id))

    def _holder(self, spec: GuestSpec):
        holder = self._get("containers", docker_net.holder_name(spec.name))
        if holder is None or (holder.labels or {}).get(docker_net.HOLDER_LABEL_HOST) != spec.host_id:
            return None
        return holder

    def _start_holder(self, spec: GuestSpec, ports: dict | None) -> None:
        """The holder running, with the deny rules in its namespace. `ports` given: made anew (a create);
        None: the existing one is started (a start), or made when it is missing."""
        import docker

        holder = self._holder(spec)
        if holder is not None and ports is not None:
            self._remove(holder)
            holder = None
        if holder is None:
            if ports is None:
                ports = {f"{g}/tcp": (spec.publish_addr, h) for g, h in spec.port_map.items()}
            holder = self._create_holder(spec, ports)
        try:
            holder.reload()
            if holder.status not in RUNNING_STATES:
                holder.start()
                holder.reload()
        except docker.errors.DockerException as exc:
            raise EngineError(f"docker could not start the network holder of {spec.name}: {_explain(exc)}") from exc
        subnet, gateway = "", ""
        if spec.network:
            net = docker_net.find_network(self.client(), spec.host_id, spec.network)
            subnet, gateway = docker_net.subnet_and_gateway(net or {})
        docker_net.load_rules(_pid(holder, spec), docker_net.deny_rules(subnet, gateway),
                              docker_net.deny_rules(ipv6=True))

    def _create_holder(self, spec: GuestSpec, ports: dict):
        import docker

        try:
            return docker_net.create_holder(self.client(), spec, ports, _docker_hostname(spec.hostname or spec.vm_id))
        except docker.errors.DockerException as exc:
            raise EngineError(f"docker could not create the network holder of {spec.name}: {_explain(exc)}") from exc

    def _stop_holder(self, spec: GuestSpec) -> None:
        """A stopped guest's holder stops too (it holds the published ports); a start starts it again."""
        import docker

        holder = self._holder(spec)
        if holder is not None:
            try:
                holder.stop(timeout=0)  # it runs nothing worth waiting for
            except docker.errors.NotFound:
                pass


def _joins_holder(container) -> bool:
    return str((container.attrs.get("HostConfig") or {}).get("NetworkMode", "")).startswith("container:")


def _pid(container, spec: GuestSpec) -> int:
    pid = (container.attrs.get("State") or {}).get("Pid") or 0
    if not pid:
        raise EngineError(f"{spec.name} has no process to firewall (did it exit at once?)")
    return pid

def _docker_hostname(name: str) -> str:
    """Docker accepts up to 63 characters of [A-Za-z0-9.-]-ish text for a hostname; keep it valid."""
    cleaned = "".join(c if c.isalnum() or c in ".-" else "-" for c in name).strip(".-")
    return (cleaned or "guest")[:63]


def _explain(exc) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
