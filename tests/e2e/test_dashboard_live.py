"""The live dashboard in Debian's chromium, against a real controller and a real docker agent: it follows
the event stream (/ws/dashboard) — a new environment and its state changes show without a reload and
sooner than the polling fallback — and a staff user signed in acts on hosts and environments from it."""

import subprocess
import sys
from datetime import datetime

import pytest

from tests.conftest import ROOT, wait_for
from tests.fleet.helpers import env_body

from .test_fleet_browser import env_id, fleet, sign_in  # noqa: F401 - fixtures reused here

pytestmark = pytest.mark.browser
FASTER_THAN_POLLING = 4_000  # ms; the page polls every 10 s while its stream is up


def add_staff(ctl, username, password):
    code = (f"from django.contrib.auth.models import User; "
            f"User.objects.create_user({username!r}, password={password!r}, is_staff=True)")
    subprocess.run([sys.executable, "-m", "ttproject.cli", "manage", "controller", "shell", "-c", code],
                   env=ctl.env, cwd=ROOT, check=True, capture_output=True, timeout=60)


def test_dashboard_is_live_and_staff_act_from_it(fleet, env_id, new_page, shot):  # noqa: F811
    from playwright.sync_api import expect

    ctl, agent = fleet
    add_staff(ctl, "ops", "ops-pass-1")
    visitor = new_page()
    visitor.goto(f"{ctl.url}/")
    expect(visitor.locator("#hosts-table th")).to_have_count(9)  # no actions for visitors
    staff = new_page()
    sign_in(staff, ctl, "ops", "ops-pass-1")
    staff.goto(f"{ctl.url}/")
    for page in (visitor, staff):
        expect(page.locator("#live-text")).not_to_contain_text("polling")
        expect(page.locator("#live-text")).to_contain_text("live ·")
        page.evaluate("window.__noReload = true")

    api = ctl.client()
    assert api.post("/api/envs", json=env_body(env_id)).status_code == 202
    row = staff.locator(f'#envs tr[data-env="{env_id}"]')
    expect(row).to_have_count(1, timeout=FASTER_THAN_POLLING)
    expect(visitor.locator(f'#envs tr[data-env="{env_id}"]')).to_have_count(1, timeout=FASTER_THAN_POLLING)
    wait_for(lambda: api.get(f"/api/envs/{env_id}").json()["state"] == "active", timeout=120, message="env active")
    expect(row).to_have_attribute("data-state", "active", timeout=FASTER_THAN_POLLING)
    shot(staff, "dashboard-staff-env-active")

    # extend by an hour, from the dashboard
    before = api.get(f"/api/envs/{env_id}").json()["expires_at"]
    row.locator("button.act-extend").click()
    expect(staff.locator("#staff-message")).to_have_text(f"extend {env_id}: done")
    after = api.get(f"/api/envs/{env_id}").json()["expires_at"]
    assert timestamp(after) - timestamp(before) > 3500

    # drain and undrain the host: the row shows it, the API agrees
    host = staff.locator(f'#hosts tr[data-host="{agent.addr}"]')
    host.locator("button.act-drain").click()
    expect(host.locator(".state-draining")).to_have_text("draining", timeout=FASTER_THAN_POLLING)
    assert api.get("/api/hosts").json()[0]["drain"] is True
    expect(visitor.locator(f'#hosts tr[data-host="{agent.addr}"] .state-draining')).to_have_count(
        1, timeout=FASTER_THAN_POLLING)
    shot(staff, "dashboard-staff-host-draining")
    host.locator("button.act-undrain").click()
    expect(host.locator(".state-draining")).to_have_count(0, timeout=FASTER_THAN_POLLING)
    assert api.get("/api/hosts").json()[0]["drain"] is False

    # stop, then delete the environment
    row.locator("button.act-stop").click()
    expect(row).to_have_attribute("data-state", "stopped", timeout=60_000)
    staff.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.act-delete").click()
    expect(row).to_have_count(0, timeout=60_000)

    # last, as it gives the host up for good: detach (POST /api/hosts/{id}/detach), seen by the visitor too
    staff.once("dialog", lambda dialog: dialog.accept())
    host.locator("button.act-detach").click()
    expect(staff.locator("#staff-message")).to_have_text(f"detach {agent.addr}: done")
    expect(host).to_have_attribute("data-state", "detached", timeout=FASTER_THAN_POLLING)
    expect(visitor.locator(f'#hosts tr[data-host="{agent.addr}"]')).to_have_attribute(
        "data-state", "detached", timeout=FASTER_THAN_POLLING)
    assert api.get("/api/hosts").json()[0]["state"] == "detached"
    for page in (visitor, staff):
        assert page.evaluate("window.__noReload === true"), "the page reloaded"
    recorded = [(e["actor"], e["action"]) for e in api.get("/api/events", params={"actor": "operator"}).json()]
    assert {("operator", "env.extend"), ("operator", "host.update"), ("operator", "env.stop"),
            ("operator", "env.delete"), ("operator", "host.detach")} <= set(recorded), recorded
    api.close()


def timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
