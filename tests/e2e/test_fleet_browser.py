"""Browser acceptance of the controller's pages: a real controller (daphne + worker + fleet loop) and a
real agent with the docker engine on 127.0.0.1, driven through Debian's chromium.

- owner A signs in, creates an environment with one docker VM through the form, watches it become active
  without a reload, sees the SSH line, deletes it; owner B never sees it;
- the dashboard shows a host going offline within seconds of its agent being killed.
"""

import re
import subprocess
import sys
import uuid

import pytest

from tests.conftest import ROOT
from tests.fleet.helpers import ssh_key

IMAGE = "ttstack/tiny:latest"
pytestmark = pytest.mark.browser


@pytest.fixture
def env_id(docker_client):
    name = f"web-{uuid.uuid4().hex[:8]}"
    yield name
    for c in docker_client.containers.list(all=True, filters={"name": name}):
        c.remove(force=True)


@pytest.fixture
def fleet(role_server, docker_client):
    agent = role_server("agent", env={"TTSTACK_ENGINES": "docker"})
    ctl = role_server("controller", env={"TTSTACK_HOST_TIMEOUT": "3"})
    with ctl.client() as c:
        reply = c.post("/api/hosts", json={"addr": agent.addr, "api_key": agent.api_key})
        assert reply.status_code == 201, reply.text
    return ctl, agent


def add_owner(ctl, username, password):
    subprocess.run([sys.executable, "-m", "ttproject.cli", "manage", "controller", "add_owner", username,
                    "--password-stdin"], input=password + "\n", text=True, env=ctl.env, cwd=ROOT, check=True,
                   capture_output=True, timeout=60)


def sign_in(page, ctl, username, password):
    page.goto(f"{ctl.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-submit")
    page.wait_for_url(f"{ctl.url}/my/")


def test_owner_creates_watches_and_deletes_an_env(fleet, env_id, new_page, shot, docker_client):
    from playwright.sync_api import expect

    ctl, agent = fleet
    add_owner(ctl, "alice", "alice-pass-1")
    add_owner(ctl, "bob", "bob-pass-1")

    alice = new_page()
    sign_in(alice, ctl, "alice", "alice-pass-1")
    expect(alice.locator("#no-envs")).to_be_visible()
    alice.click("#new-env")
    alice.fill("#id_id", env_id)
    alice.fill("#id_image", IMAGE)
    alice.select_option("#id_engine", "docker")
    alice.fill("#id_cpu", "1")
    alice.fill("#id_mem", "64")
    alice.fill("#id_disk", "64")
    alice.fill("#id_ports", "22 80")
    alice.fill("#id_ssh_keys", ssh_key("alice@laptop"))
    alice.fill("#id_lifetime", "1")
    expect(alice.locator("#id_isolated_network")).to_be_checked()  # the API's default
    alice.uncheck("#id_isolated_network")
    shot(alice, "owner-create-form")
    alice.click("#create-env")
    alice.wait_for_url(re.compile(rf"/my/envs/{env_id}\?task="))
    alice.evaluate("window.__noReload = true")  # gone if the page reloads

    card = alice.locator(f'section.env[data-env="{env_id}"]')
    expect(card).to_have_attribute("data-state", "active", timeout=120_000)
    expect(alice.locator("#task-status")).to_have_text("completed")
    ssh = card.locator("code.ssh")
    expect(ssh).to_have_text(re.compile(r"^ssh -p \d+ root@127\.0\.0\.1$"))
    port = int(ssh.inner_text().split()[2])
    assert 20000 <= port <= 65535
    expect(card.locator('tr[data-state="running"] td').nth(2)).to_have_text("docker")
    assert alice.evaluate("window.__noReload === true"), "the page reloaded"
    assert alice.request.get(f"{ctl.url}/api/envs/{env_id}").json()["isolated_network"] is False
    shot(alice, "owner-env-active")

    # The owners' list shows it too, with the time left.
    alice.goto(f"{ctl.url}/my/")
    expect(alice.locator(f'section.env[data-env="{env_id}"] .timeleft')).to_contain_text(re.compile(r"\d+m"))

    # Owner B sees nothing of it: not in the list, not by URL, not through the API.
    bob = new_page()
    sign_in(bob, ctl, "bob", "bob-pass-1")
    expect(bob.locator("#no-envs")).to_be_visible()
    assert bob.locator(f'[data-env="{env_id}"]').count() == 0
    assert bob.request.get(f"{ctl.url}/my/envs/{env_id}").status == 404
    assert bob.request.get(f"{ctl.url}/api/envs").json() == []
    assert bob.request.get(f"{ctl.url}/api/envs/{env_id}").status == 404
    shot(bob, "owner-b-list")

    # The open dashboard lists the environment and the host.
    dash = new_page()
    dash.goto(f"{ctl.url}/")
    expect(dash.locator(f'#envs tr[data-env="{env_id}"]')).to_have_attribute("data-state", "active")
    expect(dash.locator(f'#hosts tr[data-host="{agent.addr}"]')).to_have_attribute("data-state", "online")
    shot(dash, "dashboard-with-env")

    # A deletes it from the detail page and sees it go, still without a reload.
    alice.goto(f"{ctl.url}/my/envs/{env_id}")
    alice.evaluate("window.__noReload = true")
    alice.once("dialog", lambda dialog: dialog.accept())
    alice.locator(f'section.env[data-env="{env_id}"] button.act-delete').click()
    expect(alice.locator("#no-envs")).to_be_visible(timeout=60_000)
    expect(alice.locator("#task-status")).to_have_text("completed")
    assert alice.evaluate("window.__noReload === true"), "the page reloaded"
    shot(alice, "owner-env-deleted")
    assert docker_client.containers.list(all=True, filters={"name": env_id}) == []
    expect(dash.locator(f'#envs tr[data-env="{env_id}"]')).to_have_count(0)
    # The only failed loads are the expected 404s of the env once it is gone.
    assert not [e for e in alice.errors if "404" not in e], alice.errors


def test_dashboard_shows_a_host_going_offline(fleet, new_page, shot):
    from playwright.sync_api import expect

    ctl, agent = fleet
    page = new_page()
    page.goto(f"{ctl.url}/")
    row = page.locator(f'#hosts tr[data-host="{agent.addr}"]')
    expect(row).to_have_attribute("data-state", "online")
    expect(page.locator("#stat-hosts")).to_have_text("1 / 1")
    shot(page, "dashboard-online")
    page.evaluate("window.__noReload = true")
    agent.kill()
    # Heartbeat 1 s, host timeout 3 s, page polling every 2 s: seconds, not minutes.
    expect(row).to_have_attribute("data-state", "offline", timeout=20_000)
    expect(page.locator("#stat-hosts")).to_have_text("0 / 1")
    assert page.evaluate("window.__noReload === true"), "the page reloaded"
    shot(page, "dashboard-offline")
    assert not [e for e in page.errors if "dashboard.json" not in e], page.errors
