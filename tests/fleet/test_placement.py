"""The placement algorithm (fleet.placement), in-process: eligibility, capacity, best-fit packing, reasons per host."""

import pytest

from fleet.placement import HostCap, NoFit, VmReq, place


def host(i, cpu=8, mem=16384, disk=100000, **kw):
    kw.setdefault("engines", frozenset({"qemu", "docker"}))
    kw.setdefault("images", {"alpine": frozenset({"qemu"})})
    return HostCap(id=i, name=f"h{i}", cpu_free=cpu, mem_free=mem, disk_free=disk, **kw)


def vm(engine="docker", image="ttstack/tiny:latest", cpu=1, mem=512, disk=1024):
    return VmReq(image, engine, cpu, mem, disk)


def test_best_fit_fills_the_fullest_host_first():
    hosts = [host(1, mem=8192), host(2, mem=4096), host(3, mem=16384)]
    assert place(hosts, [vm(mem=1024)]) == [2]
    assert place(hosts, [vm(mem=6000)]) == [1]


def test_spread_picks_the_emptiest_host():
    hosts = [host(1, mem=8192), host(2, mem=4096), host(3, mem=16384)]
    assert place(hosts, [vm(mem=1024)], policy="spread") == [3]


def test_capacity_is_consumed_within_one_request():
    hosts = [host(1, cpu=2), host(2, cpu=2)]
    assert sorted(place(hosts, [vm(cpu=2), vm(cpu=2)])) == [1, 2]
    with pytest.raises(NoFit):
        place(hosts, [vm(cpu=2)] * 3)


def test_largest_vms_are_placed_first():
    # 7 GiB of VMs on 7 GiB of hosts fit only largest first: a 3 GiB VM fills host 2 exactly, the other
    # goes to host 1 with the 1 GiB one. Smallest (or request order) first puts the 1 GiB VM on the
    # tightest host that takes it (host 2, leaving 2 GiB) and then one 3 GiB VM finds no room.
    hosts = [host(1, mem=4096), host(2, mem=3072)]
    assert place(hosts, [vm(mem=1024), vm(mem=3072), vm(mem=3072)]) == [1, 2, 1]


def test_input_is_not_modified():
    hosts = [host(1, cpu=4)]
    place(hosts, [vm(cpu=3)])
    assert hosts[0].cpu_free == 4


@pytest.mark.parametrize("kw,why", [
    ({"online": False}, "offline"),
    ({"drain": True}, "draining"),
    ({"engines": frozenset({"qemu"})}, "engine docker not available"),
])
def test_ineligible_hosts_say_why(kw, why):
    with pytest.raises(NoFit) as exc:
        place([host(1, **kw)], [vm()])
    assert why in exc.value.reasons["h1"]
    assert why in str(exc.value)


def test_image_must_be_present_for_vm_engines_but_not_for_docker():
    hosts = [host(1)]
    assert place(hosts, [vm(engine="qemu", image="alpine")]) == [1]
    assert place(hosts, [vm(engine="docker", image="anything:tag")]) == [1]
    with pytest.raises(NoFit) as exc:
        place(hosts, [vm(engine="qemu", image="alpine-cloud")])
    assert "image alpine-cloud not present" in exc.value.reasons["h1"]


def test_capacity_reason_names_each_short_resource():
    with pytest.raises(NoFit) as exc:
        place([host(1, cpu=1, mem=100, disk=10)], [vm(cpu=2, mem=512, disk=1024)])
    reason = exc.value.reasons["h1"]
    assert "cpu 2 > 1 free" in reason and "mem 512 > 100" in reason and "disk 1024 > 10" in reason


def test_no_hosts():
    with pytest.raises(NoFit, match="no hosts registered"):
        place([], [vm()])


def test_never_overcommits_many_vms():
    hosts = [host(i, cpu=4, mem=8192, disk=50000) for i in range(50)]
    vms = [vm(cpu=1 + i % 2, mem=512 * (1 + i % 3), disk=1000) for i in range(120)]
    result = place(hosts, vms)
    for h in hosts:
        mine = [v for v, hid in zip(vms, result, strict=True) if hid == h.id]
        assert sum(v.cpu for v in mine) <= 4 and sum(v.mem for v in mine) <= 8192
