"""Dashboard endpoint cost (run: .venv/bin/python bench/dashboard.py [--envs N] [--hosts N] [--reps N]).

GET /dashboard.json (what the dashboard polls every 2 s) on a fleet of N hosts and N environments x 2
VMs, in process on a fresh SQLite file, against GET /api/status (the cheapest fleet endpoint) as the
baseline. Prints the query count, the median time of each and the ratio; the query count must not
grow with the fleet.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=500)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    os.environ.update(TTSTACK_DATA_DIR=tempfile.mkdtemp(prefix="tt-bench-dash-"), TTSTACK_ROLE="controller",
                      DJANGO_SETTINGS_MODULE="ttproject.settings")
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client, override_settings

    from fleet.models import Environment, Host, Vm
    from fleet.pages.views import dashboard_data
    from fleet.queries import fleet_status

    call_command("migrate", verbosity=0)
    hosts = Host.objects.bulk_create(
        Host(addr=f"10.0.{i // 250}.{i % 250}:9100", engines=["docker", "qemu"], storage="file", cpu_total=64,
             mem_total=262144, disk_total=4_000_000, images=[{"name": f"img{j}", "engines": ["qemu"]} for j in range(5)])
        for i in range(args.hosts))
    envs = Environment.objects.bulk_create(Environment(id=f"env{i}", owner=f"user{i % 20}", state="active")
                                           for i in range(args.envs))
    Vm.objects.bulk_create(Vm(id=f"{e.id}-{k}", env=e, index=k, host=hosts[(i + k) % len(hosts)], image="img0",
                              engine="qemu", cpu=2, mem=2048, disk=40960, state="running")
                           for i, e in enumerate(envs) for k in range(2))

    client = Client()

    def count_queries(url, build):
        assert client.get(url).status_code == 200
        queries = []
        with connection.execute_wrapper(lambda execute, sql, *a: queries.append(sql) or execute(sql, *a)):
            build()
        return len(queries)

    def medians(*urls):
        """Median seconds of GET url for each url, the requests alternating so all see the same load."""
        times = {url: [] for url in urls}
        for _ in range(args.reps):
            for url in urls:
                start = time.perf_counter()
                client.get(url)
                times[url].append(time.perf_counter() - start)
        return [statistics.median(times[url]) for url in urls]

    with override_settings(ROOT_URLCONF="ttproject.urls.controller", API_KEY=None):
        dash_q = count_queries("/dashboard.json", dashboard_data)
        base_q = count_queries("/api/status", fleet_status)
        dash_t, base_t = medians("/dashboard.json", "/api/status")
    print(f"fleet: {args.hosts} hosts, {args.envs} envs x 2 VMs; {args.reps} reps, medians")
    print(f"GET /dashboard.json: {dash_q} queries, {dash_t * 1000:.1f} ms")
    print(f"GET /api/status    : {base_q} queries, {base_t * 1000:.1f} ms (baseline)")
    print(f"ratio dashboard/status: {dash_t / base_t:.2f}")


if __name__ == "__main__":
    main()
