"""Agent API in-process: bad input is refused with a clear 4xx and leaves nothing behind; failed creates
clean up; storage overlays and port allocation."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from agent import conf, ports, reconcile, resources
from agent import engines as registry
from agent.engines.base import EngineError, Image
from agent.models import PortAllocation, Vm
from agent.storage.file import FileStorage
from tests.agent.conftest import TINY, containers_of, remove_containers_of
from tests.conftest import require

pytestmark = [pytest.mark.urls("ttproject.urls.agent"), pytest.mark.django_db]

KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@example")


@pytest.fixture(autouse=True)
def agent_env(settings, tmp_path):
    settings.AGENT_PUBLISH_ADDR = "127.0.0.1"
    settings.AGENT_IMAGE_DIR = tmp_path / "images"
    (tmp_path / "images").mkdir()
    yield tmp_path
    remove_containers_of(conf.host_id())


def post(client, body):
    return client.post("/api/vms", data=json.dumps(body), content_type="application/json")


def nothing_left(vm_id: str | None = None):
    assert Vm.objects.count() == 0
    assert PortAllocation.objects.count() == 0
    if vm_id:
        assert not (conf.vms_dir() / vm_id).exists()


@pytest.mark.parametrize("body, field", [
    ({"image": "x", "engine": "vmware"}, "engine"),
    ({"image": "../etc/passwd"}, "image"),
    ({"image": "a/b"}, "image"),
    ({"image": ".hidden"}, "image"),
    ({"image": ".."}, "image"),
    ({"image": "x", "cpu": 0}, "cpu"),
    ({"image": "x", "mem": -1}, "mem"),
    ({"image": "x", "disk": 0}, "disk"),
    ({"image": "x", "ports": list(range(1000, 1257))}, "ports"),
    ({"image": "x", "ports": [0]}, "ports"),
    ({"image": "x", "ports": [65536]}, "ports"),
    ({"image": "x", "ssh_keys": ["ssh-ed25519 not-base64!"]}, "ssh_keys"),
    ({"image": "x", "ssh_keys": ["hello world"]}, "ssh_keys"),
    ({"image": "x", "id": ".dot"}, "id"),
    ({"image": "x", "id": "a/b"}, "id"),
    ({"image": "x", "id": "x" * 129}, "id"),
    ({"image": "x", "hostname": "bad host"}, "hostname"),
    ({"image": "x", "id": "tnl\n"}, "id"),
    ({"image": "x", "id": " tnl"}, "id"),
    ({"image": "x", "hostname": "web\n"}, "hostname"),
    ({"image": "x", "hostname": "-web"}, "hostname"),
    ({"image": "x", "hostname": "web-"}, "hostname"),
    ({"image": "x", "hostname": "web.example.com"}, "hostname"),
    ({"image": "x", "hostname": "h" * 64}, "hostname"),
    ({"image": "x", "mem": 1}, "at least 16 MiB"),
    ({"image": "x", "mem": 32}, "at least 64 MiB for the qemu engine"),
    ({"image": "x", "engine": "docker", "mem": 15}, "mem"),
    ({"image": "x", "disk": 2**31}, "disk"),
    ({"image": "x\n"}, "image"),
])
def test_bad_input_is_400(client, body, field):
    reply = post(client, body)
    assert reply.status_code == 400, reply.content
    data = reply.json()
    assert field in data["detail"], data
    nothing_left()


def test_255_ports_plus_22_is_too_many_for_a_vm_engine(client):
    reply = post(client, {"image": "x", "ports": list(range(1000, 1256))})
    assert reply.status_code == 400 and "at most 256" in reply.json()["detail"]
    nothing_left()


def test_engine_not_available_is_422_naming_it(client):
    reply = post(client, {"image": "x", "engine": "bhyve"})
    assert reply.status_code == 422
    assert "bhyve" in reply.json()["detail"]
    nothing_left()


def test_unknown_vm_is_404_with_detail(client):
    for reply in (client.get("/api/vms/nope"), client.delete("/api/vms/nope"), client.post("/api/vms/nope/stop")):
        assert reply.status_code == 404 and "nope" in reply.json()["detail"]


def test_docker_unknown_image_and_capacity(client, docker_tiny):
    reply = post(client, {"image": "ttstack/no-such-image", "engine": "docker"})
    assert reply.status_code == 400 and "unknown image" in reply.json()["detail"]
    reply = post(client, {"image": TINY, "engine": "docker", "cpu": 4096})
    assert reply.status_code == 422 and "cpu" in reply.json()["detail"]
    reply = post(client, {"image": TINY, "engine": "docker", "mem": 1 << 30})
    assert reply.status_code == 422 and "mem" in reply.json()["detail"]
    nothing_left()
    assert containers_of(conf.host_id()) == []


@pytest.fixture
def broken_image(docker_tiny):
    """A docker image whose command does not exist: the container is created, then fails to start."""
    from agent.imagebuild.docker_tiny import root_tar
    from tests.agent.conftest import docker_client

    client = docker_client()
    client.api.import_image_from_data(root_tar(), repository="ttstack/test-broken", tag="latest",
                                      changes=['CMD ["/no/such/command"]'])
    yield "ttstack/test-broken:latest"
    remove_containers_of(conf.host_id())
    client.images.remove("ttstack/test-broken:latest", force=True)


def test_failed_create_cleans_up_and_keeps_a_failed_record(client, broken_image):
    reply = post(client, {"id": "broken", "image": broken_image, "engine": "docker", "ports": [80], "mem": 64})
    assert reply.status_code == 500
    data = reply.json()
    assert "broken" in data["detail"] and data["vm"]["state"] == "failed" and data["vm"]["error"]
    vm = client.get("/api/vms/broken").json()
    assert vm["state"] == "failed" and vm["port_map"] == {}
    assert PortAllocation.objects.count() == 0
    assert containers_of(conf.host_id()) == []
    assert not (conf.vms_dir() / "broken").exists()
    assert client.post("/api/vms/broken/start").status_code == 409
    assert client.delete("/api/vms/broken").status_code == 204
    nothing_left()


def make_base(directory: Path, name: str, size: str = "64M", fmt: str = "qcow2") -> Path:
    path = directory / f"{name}.{fmt}"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), size], check=True)
    return path


def test_file_storage_overlay_never_copies_the_base(tmp_path):
    base = make_base(tmp_path, "big", "8G", "raw")
    image = Image(name="big", engine_kind="vm", disk=base, disk_format="raw")
    storage = FileStorage()
    workdir = tmp_path / "vm"
    disk = storage.create_disk("vm", image, 10240, workdir)
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)], check=True,
                                     capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2"
    assert Path(info["backing-filename"]) == base
    assert info["virtual-size"] == 10240 * 1024 * 1024
    assert disk.stat().st_size < 2 * 1024 * 1024  # an overlay, not a copy
    # smaller than the base: the overlay keeps the base's size
    small = storage.create_disk("vm2", image, 100, tmp_path / "vm2")
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(small)], check=True,
                                     capture_output=True, text=True).stdout)
    assert info["virtual-size"] == 8 * 1024 ** 3
    storage.destroy_disk("vm", workdir)
    storage.destroy_disk("vm", workdir)  # idempotent
    assert not disk.exists()


def test_images_listing_and_names(agent_env):
    from agent import image_names
    from agent.storage import image_dir

    directory = agent_env / "images"
    make_base(directory, "plain")
    (directory / "kernel-img").mkdir()
    make_base(directory / "kernel-img", "disk")
    (directory / "kernel-img" / "vmlinuz").write_bytes(b"k")
    (directory / "kernel-img" / "image.json").write_text(json.dumps(
        {"disk": "disk.qcow2", "format": "qcow2", "kernel": "vmlinuz", "description": "with a kernel"}))
    (directory / "escape").mkdir()
    (directory / "escape" / "image.json").write_text(json.dumps({"disk": "../plain.qcow2"}))
    (directory / ".hidden.qcow2").write_bytes(b"")
    found = {i.name: i for i in image_dir.disk_images(directory)}
    assert set(found) == {"plain", "kernel-img"}
    assert found["kernel-img"].kernel == (directory / "kernel-img" / "vmlinuz").resolve()
    assert image_dir.find_disk_image("escape", directory) is None
    for bad in ("../plain", "a/b", ".hidden", "", "plain\n"):
        with pytest.raises(image_names.ImageNameError):
            image_dir.find_disk_image(bad, directory)
    assert image_names.check_docker_ref("ttstack/tiny:latest")
    with pytest.raises(image_names.ImageNameError):
        image_names.check_docker_ref("ttstack/tiny:latest\n")
    assert image_names.docker_ref("ttstack/tiny") == "ttstack/tiny:latest"


def test_ports_probe_unique_and_release(settings):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        settings.AGENT_PORT_RANGE = (taken, taken + 3)
        a = Vm.objects.create(id="a", image="x", engine="docker", cpu=1, mem=1, disk=1, hostname="a")
        b = Vm.objects.create(id="b", image="x", engine="docker", cpu=1, mem=1, disk=1, hostname="b")
        got_a = ports.allocate(a, [80, 22], "127.0.0.1")
        assert taken not in got_a.values() and len(set(got_a.values())) == 2
        got_b = ports.allocate(b, [80], "127.0.0.1")
        assert not set(got_b.values()) & set(got_a.values()) and taken not in got_b.values()
        with pytest.raises(ports.NoFreePort):
            ports.allocate(b, [81], "127.0.0.1")
        ports.release("a")
        assert set(ports.allocate(b, [81], "127.0.0.1").values()) <= set(got_a.values())


def test_ports_outside_the_kernels_ephemeral_range_come_first(settings, tmp_path, monkeypatch):
    """An outgoing connection may be given an ephemeral port between the probe and the guest's bind: guests
    get the range's other ports while any are left, the ephemeral ones after; each part from a random port
    of its own (two agents of one machine starting at the same port race for it)."""
    fake = tmp_path / "ip_local_port_range"
    fake.write_text("20010\t20089\n")
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", fake)
    outside = set(range(20000, 20010)) | set(range(20090, 20100))
    firsts = {next(ports.candidates(20000, 20099)) for _ in range(60)}
    assert firsts <= outside and len(firsts) >= 8
    order = list(ports.candidates(20000, 20099))
    assert sorted(order) == list(range(20000, 20100))
    assert set(order[:20]) == outside

    settings.AGENT_PORT_RANGE = (20000, 20099)
    vm = Vm.objects.create(id="a", image="x", engine="docker", cpu=1, mem=1, disk=1, hostname="a")
    first = ports.allocate(vm, list(range(1, 21)), "127.0.0.1")
    assert set(first.values()) == outside
    [then] = ports.allocate(vm, [21], "127.0.0.1").values()
    assert 20010 <= then <= 20089


def test_a_host_port_taken_after_its_probe_gets_the_guest_new_ports(client, docker_tiny, settings, monkeypatch):
    """Another process binds the probed port before docker does (another agent's guest on this machine, an
    outgoing connection): the guest comes up on another port, nothing of the failed start is left."""
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", 0))
        thief.listen()
        stolen = thief.getsockname()[1]
        settings.AGENT_PORT_RANGE = (stolen, min(stolen + 50, 65535))
        monkeypatch.setattr(ports.random, "randrange", lambda _n: 0)  # the range's first port is tried first
        probe, lied = ports.port_is_free, []

        def free_at_probe_time(port, addr):  # the thief binds it after the probe, once
            if port == stolen and not lied:
                lied.append(port)
                return True
            return probe(port, addr)

        monkeypatch.setattr(ports, "port_is_free", free_at_probe_time)
        reply = post(client, {"id": "web", "image": TINY, "engine": "docker", "ports": [80], "mem": 64})
        assert reply.status_code == 201, reply.text
        host_port = reply.json()["port_map"]["80"]
        assert lied and host_port != stolen
        [container] = containers_of(conf.host_id())
        assert container.attrs["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"] == str(host_port)
        assert list(PortAllocation.objects.values_list("host_port", flat=True)) == [host_port]
    assert client.delete("/api/vms/web").status_code == 204
    nothing_left()


def test_failed_qemu_create_removes_overlay_and_seed(client, agent_env, monkeypatch):
    """A failure after the disk and seed exist: overlay, seed, work dir and ports are all removed."""
    require("libvirt")
    base = make_base(agent_env / "images", "blank")
    before = base.read_bytes()
    seen = {}

    def failing_create(self, spec):
        seen["disk"], seen["seed"] = spec.disk_path, spec.seed_path
        assert spec.disk_path.exists() and spec.seed_path.exists()
        raise EngineError("injected failure")

    engine = registry.available("qemu")
    monkeypatch.setattr(type(engine), "create", failing_create)
    reply = post(client, {"id": "q1", "image": "blank", "ssh_keys": [KEY], "mem": 128, "disk": 1024})
    assert reply.status_code == 500 and "injected failure" in reply.json()["detail"]
    assert not seen["disk"].exists() and not seen["seed"].exists()
    assert not (conf.vms_dir() / "q1").exists()
    assert PortAllocation.objects.count() == 0
    assert Vm.objects.get(pk="q1").state == "failed"
    assert base.read_bytes() == before
    assert client.delete("/api/vms/q1").status_code == 204


def test_info_shape(client):
    data = client.get("/api/info").json()
    assert set(data) == {"host_id", "hostname", "version", "engines", "engines_unavailable", "storage",
                         "resources", "images", "vm_count", "auth", "warnings"}
    assert data["host_id"] == conf.host_id() and data["storage"] == "file"
    assert "bhyve" in data["engines_unavailable"] and "bhyve" not in data["engines"]
    assert set(data["resources"]) == {"cpu_total", "mem_total", "disk_total", "cpu_used", "mem_used", "disk_used"}
    assert client.get("/api/images").status_code == 200


def test_host_id_is_made_once_and_private(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    first = conf.host_id()
    assert stat.S_IMODE((tmp_path / "host_id").stat().st_mode) == 0o600
    assert conf.host_id() == first and conf.guest_name("v1") == f"tt-{first[:8]}-v1"


def test_generated_id_and_reservations(client, docker_tiny):
    reply = post(client, {"image": TINY, "engine": "docker", "cpu": 1, "mem": 32, "disk": 10})
    assert reply.status_code == 201, reply.content
    vm = reply.json()
    assert vm["id"].startswith("vm-") and vm["hostname"] == vm["id"] and vm["ports"] == []
    res = resources.resources()
    assert (res["cpu_used"], res["mem_used"], res["disk_used"]) == (1, 32, 10)
    assert client.delete(f"/api/vms/{vm['id']}").status_code == 204
    nothing_left()


@pytest.mark.parametrize("storage", ["zvol", "zfs"])
def test_zvol_storage_is_refused_at_start(tmp_path, storage):
    import os
    import sys

    from tests.conftest import ROOT, free_port

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env["TTSTACK_DATA_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "ttproject.cli", "agent", "--storage", storage, "--port",
                             str(free_port()), "--bind", "127.0.0.1"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    # no ZFS on this machine: the zvol storage's probe says why, and the agent does not start
    assert "storage zvol" in result.stderr and "zfs" in result.stderr.lower()


def test_image_build_dispatcher(docker_tiny):
    from agent.imagebuild import build

    assert build("docker-tiny") == TINY
    with pytest.raises(ValueError):
        build("nonsense")


def test_failed_create_whose_cleanup_fails_too_is_recorded_failed_and_frees_ports(client, docker_tiny,
                                                                                  monkeypatch):
    """engine.create and engine.destroy both raise: the record is failed with both messages, the ports
    are released, and a retried identical create answers that failed record (not `creating`)."""
    engine = registry.available("docker")

    def failing_create(self, spec):
        raise EngineError("injected create failure")

    def failing_destroy(self, spec):
        raise EngineError("injected destroy failure")

    monkeypatch.setattr(type(engine), "create", failing_create)
    monkeypatch.setattr(type(engine), "destroy", failing_destroy)
    body = {"id": "both-fail", "image": TINY, "engine": "docker", "ports": [80], "mem": 64}
    reply = post(client, body)
    assert reply.status_code == 500
    data = reply.json()
    assert "injected create failure" in data["detail"] and "injected destroy failure" in data["detail"]
    vm = Vm.objects.get(pk="both-fail")
    assert vm.state == "failed" and vm.port_map == {}
    assert "injected create failure" in vm.error and "injected destroy failure" in vm.error
    assert PortAllocation.objects.count() == 0
    again = post(client, body)
    assert again.status_code == 200 and again.json()["state"] == "failed"
    monkeypatch.undo()
    assert client.delete("/api/vms/both-fail").status_code == 204
    nothing_left("both-fail")


def test_reconcile_releases_ports_of_an_interrupted_create_even_when_cleanup_fails(docker_tiny, monkeypatch):
    """A record left `creating` by a crash whose guest cannot be destroyed: ports rows and port_map are
    cleared together (no drift) and the record is marked failed."""
    engine = registry.available("docker")
    vm = Vm.objects.create(id="interrupted", image=TINY, engine="docker", cpu=1, mem=64, disk=1024,
                           ports=[80], hostname="interrupted", state="creating", publish_addr="127.0.0.1",
                           guest_name=conf.guest_name("interrupted"),
                           workdir=str(conf.vms_dir() / "interrupted"))
    vm.port_map = {str(g): h for g, h in ports.allocate(vm, [80], "127.0.0.1").items()}
    vm.save()
    assert PortAllocation.objects.filter(vm_id="interrupted").count() == 1

    def failing_destroy(self, spec):
        raise EngineError("injected destroy failure")

    monkeypatch.setattr(type(engine), "destroy", failing_destroy)
    summary = reconcile.reconcile()
    assert summary["interrupted"] == 1
    vm.refresh_from_db()
    assert vm.state == "failed" and vm.port_map == {}
    assert PortAllocation.objects.filter(vm_id="interrupted").count() == 0


def test_the_engine_says_which_disk_images_it_boots(agent_env, tmp_path):
    """firecracker boots a kernel: a disk image without one is a 400 before anything is made."""
    from agent.engines.firecracker import FirecrackerEngine
    from agent.image_lookup import resolve_image
    from agent.image_names import ImageError

    directory = agent_env / "images"
    make_base(directory, "plain")
    (directory / "kernel-img").mkdir()
    make_base(directory / "kernel-img", "disk")
    (directory / "kernel-img" / "vmlinux").write_bytes(b"k")
    (directory / "kernel-img" / "image.json").write_text(json.dumps({"disk": "disk.qcow2", "kernel": "vmlinux"}))
    firecracker = FirecrackerEngine(run_dir=tmp_path / "fc", assume_kvm=True)
    assert resolve_image("kernel-img", firecracker).kernel == (directory / "kernel-img" / "vmlinux").resolve()
    with pytest.raises(ImageError, match="cannot boot image 'plain'"):
        resolve_image("plain", firecracker)
    with pytest.raises(ImageError, match="unknown image 'nope': no such disk image in"):
        resolve_image("nope", firecracker)
    with pytest.raises(ImageError, match="may not contain '/'"):
        resolve_image("a/b", firecracker)
