"""How long a localvm inventory refresh takes with 20 running VMs whose `tart ip` takes 200 ms, against
one such `tart ip` call (the baseline). The refresh runs `tart list` once and the 20 `tart ip` calls in
parallel, so the goal is a ratio of at most 2.

    .venv/bin/python bench/localvm_refresh.py [--vms 20] [--ip-delay 0.2] [--rounds 5]

Runs in-process against the tart double (tests/doubles/tart) in a temporary directory. The double is a
Python program: on a 2-core machine its start-up CPU (tens to hundreds of ms per call) dominates 21
parallel calls, so the bench also prints that floor, and then repeats the measurement with a /bin/sh
stub of `tart list` / `tart ip` that only sleeps the same delay, which shows localvm's own overhead.
"""

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TART = ROOT / "tests" / "doubles" / "tart"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=20)
    parser.add_argument("--ip-delay", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ttstack-bench-localvm-"))
    state = work / "tart-state"
    seed = work / "seed.json"
    names = [f"bench-{i:02d}" for i in range(args.vms)]
    seed.write_text(json.dumps({"vms": [{"name": n, "source": "ghcr.io/cirruslabs/macos-sonoma-base:latest"}
                                        for n in names]}))
    os.environ.update(TTSTACK_ROLE="localvm", TTSTACK_DATA_DIR=str(work / "data"),
                      TTSTACK_TOKEN_DIR=str(work / "token"), TTSTACK_TART_BIN=str(TART),
                      TART_DOUBLE_STATE=str(state), TART_DOUBLE_SEED=str(seed), TART_DOUBLE_BOOT_DELAY="0",
                      TART_DOUBLE_IP_DELAY="0", DJANGO_SETTINGS_MODULE="ttproject.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from localvm import inventory, tart

    call_command("migrate", interactive=False, verbosity=0)
    logging.getLogger("localvm.inventory").setLevel(logging.ERROR)
    runs = [subprocess.Popen([str(TART), "run", "--no-graphics", n], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
            for n in names]
    try:
        deadline = time.monotonic() + 60
        while sum(vm.get("Running") is True for vm in tart.list_vms()) < args.vms:
            if time.monotonic() > deadline:
                raise SystemExit("the double's VMs did not all start")
            time.sleep(0.2)
        os.environ["TART_DOUBLE_IP_DELAY"] = str(args.ip_delay)

        def timed(fn) -> float:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

        timed(lambda: tart.ip(names[0]))  # warm-up
        one_ip = [timed(lambda: tart.ip(names[0])) for _ in range(args.rounds)]
        refresh = []
        for _ in range(args.rounds):
            refresh.append(timed(inventory.refresh))
        # The floor this machine sets: as many no-op calls of the double as a refresh makes, in parallel
        # (its Python start-up is CPU work that 2 cores cannot overlap; real tart starts in a few ms).
        from concurrent.futures import ThreadPoolExecutor

        def noop_calls():
            with ThreadPoolExecutor(max_workers=args.vms + 1) as pool:
                list(pool.map(lambda _: subprocess.run([str(TART), "--version"], capture_output=True),
                              range(args.vms + 1)))

        floor = statistics.median(timed(noop_calls) for _ in range(args.rounds))
        vms = inventory.cached()
        with_ip = sum(1 for vm in vms if vm["ip_address"])
        base, full = statistics.median(one_ip), statistics.median(refresh)
        print(f"one `tart ip` call (delay {args.ip_delay:g} s): median {base * 1000:.0f} ms over {args.rounds}")
        print(f"refresh of {args.vms} running VMs ({with_ip} with an IP): median {full * 1000:.0f} ms "
              f"over {args.rounds}")
        print(f"ratio refresh / one ip call: {full / base:.2f}x (goal <= 2x)")
        print(f"floor on this machine: {args.vms + 1} parallel no-op `tart --version` calls take "
              f"{floor * 1000:.0f} ms ({floor / base:.2f}x one ip call; {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.1f}); refresh - floor = {(full - floor) * 1000:.0f} ms")
        stub_ratio = _with_sh_stub(work, names, args, inventory, tart, timed)
        print(f"ratio with a /bin/sh stub of tart (list + ip sleeping {args.ip_delay:g} s): {stub_ratio:.2f}x "
              "(localvm's own cost)")
        return 0 if with_ip == args.vms else 1
    finally:
        for proc in runs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in runs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _with_sh_stub(work: Path, names, args, inventory, tart, timed) -> float:
    """Same measurement with a shell stub: `list` prints the running VMs, `ip` sleeps then prints."""
    from localvm import conf

    listing = [{"Source": "local", "Name": n, "Disk": 50, "Size": 21, "Accessed": "2024-01-01T00:00:00Z",
                "Running": True, "State": "running"} for n in names]
    (work / "list.json").write_text(json.dumps(listing))
    stub = work / "tart-stub"
    stub.write_text(f"""#!/bin/sh
case "$1" in
  list) cat '{work / "list.json"}' ;;
  ip) sleep {args.ip_delay}; echo 192.168.64.2 ;;
  *) exit 1 ;;
esac
""")
    stub.chmod(0o755)
    conf.TART_BIN = str(stub)
    try:
        inventory.refresh()  # warm-up, and a snapshot that knows which VMs run
        base = statistics.median(timed(lambda: tart.ip(names[0])) for _ in range(args.rounds))
        full = statistics.median(timed(inventory.refresh) for _ in range(args.rounds))
    finally:
        conf.TART_BIN = str(TART)
    print(f"sh stub: one `tart ip` {base * 1000:.0f} ms, refresh of {args.vms} running VMs {full * 1000:.0f} ms")
    return full / base


if __name__ == "__main__":
    sys.exit(main())
