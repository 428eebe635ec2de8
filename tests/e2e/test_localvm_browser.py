"""Browser acceptance of the localvm page: a real `ttstack localvm` (daphne + worker) with the tart test
double (tests/doubles/tart) and a fake GitHub, driven through Debian's chromium.

The page is opened through the one-time sign-in URL `ttstack localvm` printed (the page itself carries no
token); a pull chosen from the GitHub catalogue streams its log into the log view; a clone appears in the
list; the cards/table choice survives a reload."""

import json
import os
import re
import time

import pytest

from tests.conftest import ROOT, wait_for
from tests.localvm.fake_github import FakeGitHub

DOUBLES = ROOT / "tests" / "doubles"
BASE_IMAGE = "ghcr.io/cirruslabs/macos-sonoma-base:latest"
pytestmark = pytest.mark.browser


@pytest.fixture
def localvm(role_server, tmp_path):
    state = tmp_path / "tart-state"
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"images": [BASE_IMAGE], "vms": [{"name": "dev", "source": BASE_IMAGE}]}))
    with FakeGitHub() as github:
        server = role_server("localvm", env={
            "PATH": f"{DOUBLES}:{os.environ.get('PATH', '')}", "TTSTACK_TART_BIN": str(DOUBLES / "tart"),
            "TART_DOUBLE_STATE": str(state), "TART_DOUBLE_SEED": str(seed), "TART_DOUBLE_PULL_STEP": "0.4",
            "TTSTACK_GITHUB_API": github.url, "TTSTACK_START_POLL": "0.5", "TTSTACK_START_WAIT": "10"})
        server.github = github
        yield server


def printed_login_url(server) -> str:
    found = wait_for(lambda: re.search(rf"{re.escape(server.url)}/\?token=[\w-]+", server.log()), timeout=30,
                     message="the sign-in URL printed at start")
    return found.group(0)


def test_pull_log_streams_and_clone_appears(localvm, new_page, shot):
    from playwright.sync_api import expect

    page = new_page()
    login = printed_login_url(localvm)
    page.goto(login)
    assert page.url == f"{localvm.url}/"  # the one-time token left the address bar
    file_token = localvm.headers()["X-Local-Token"]
    assert file_token not in page.content()
    cookie = next(c for c in page.context.cookies() if c["name"].startswith("ttstack_localvm"))
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    expect(page.locator('#working-vms [data-vm="dev"]')).to_be_visible()
    expect(page.locator(f'#base-images [data-vm="{BASE_IMAGE}"]')).to_be_visible()
    expect(page.locator("#tart-version")).to_contain_text("tart")

    # Cards or table: the choice is remembered across reloads.
    page.click("#view-table")
    expect(page.locator("#working-vms table.grid")).to_be_visible()
    page.reload()
    expect(page.locator('#working-vms table tr[data-vm="dev"]')).to_be_visible()
    page.click("#view-cards")
    expect(page.locator('#working-vms article.vm-card[data-vm="dev"]')).to_be_visible()

    # Settings: the GitHub token is stored and only shown masked.
    page.fill("#github-token", localvm.github.token)
    page.click("#github-token-save")
    expect(page.locator("#github-token-status")).to_contain_text("set:")
    assert localvm.github.token not in page.locator("#github-token-status").inner_text()

    # Pull from the catalogue; the log view follows the task over the WebSocket while it runs.
    page.click("#load-catalogue")
    target = "ghcr.io/cirruslabs/macos-ventura-base:13.6"
    expect(page.locator(f'#pull-catalogue option[value="{target}"]')).to_have_count(1)
    page.select_option("#pull-catalogue", target)
    page.click("#pull-submit")
    expect(page.locator("#log-title")).to_contain_text("localvm.pull")
    expect(page.locator("#log-status")).to_have_text("running")
    expect(page.locator("#log-lines")).to_contain_text("pulling manifest")
    seen_running = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # sample the log while the task runs: lines must arrive one by one
        status = page.locator("#log-status").inner_text()
        lines = page.locator("#log-lines").inner_text().splitlines()
        if status != "running":
            break
        seen_running.append(len(lines))
        time.sleep(0.2)
    assert len(set(seen_running)) >= 2, f"the log did not grow while running: {seen_running}"
    expect(page.locator("#active-ops li")).to_have_count(0, timeout=30_000)
    shot(page, "localvm-pull-log")
    expect(page.locator("#log-status")).to_have_text("completed")
    expect(page.locator("#log-lines")).to_contain_text("100%")
    expect(page.locator(f'#base-images [data-vm="{target}"]')).to_be_visible(timeout=30_000)

    # Clone the working VM; the clone appears in the list.
    page.locator('#working-vms [data-vm="dev"] button.act-clone').click()
    page.fill("#clone-name", "dev-copy")
    page.click("#clone-submit")
    expect(page.locator("#log-title")).to_contain_text("localvm.clone")
    expect(page.locator('#working-vms [data-vm="dev-copy"]')).to_be_visible(timeout=60_000)
    expect(page.locator("#log-status")).to_have_text("completed")
    shot(page, "localvm-after-clone")

    page.click("#view-table")
    shot(page, "localvm-table")
    assert not [e for e in page.errors if not re.search(r"40[34]", e)], page.errors

    # The link worked once: another browser opening it is not signed in.
    other = new_page()
    other.goto(login)
    expect(other.locator("#not-signed-in")).to_contain_text("used already")
    expect(other.locator('#working-vms [data-vm="dev"]')).to_have_count(0)
