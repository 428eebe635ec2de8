"""`ttstack image list|import|rm` end to end: the client as a user runs it, a real controller and a real
agent, the image served by a local http.server on 127.0.0.1."""

from __future__ import annotations

from tests.imports.conftest import file_server, random_file, sha256  # noqa: F401 - fixture reused


def test_image_import_list_rm(fleet, cli, file_server):  # noqa: F811
    controller, agent = fleet
    root, base = file_server
    disk = random_file(root / "cli-disk.raw", 300 * 1024)
    digest = sha256(disk)

    done = cli.run("image", "import", "cli-bad", "--url", f"{base}/cli-disk.raw", "--sha256", "0" * 64)
    assert done.returncode == 1 and "sha256 mismatch" in done.stderr, done.stderr
    assert cli.run("image", "import", "cli-x", "--url", f"{base}/cli-disk.raw").returncode == 2  # no --sha256

    imported = cli.ok("image", "import", "cli-disk", "--url", f"{base}/cli-disk.raw", "--sha256", digest,
                      "--host", agent.addr)
    assert "completed" in imported.stdout and "done (307200 bytes)" in imported.stderr
    [image] = [i for i in cli.json("image", "list") if i["name"] == "cli-disk"]
    assert [(h["addr"], h["sha256"]) for h in image["hosts"]] == [(agent.addr, digest)]
    assert digest[:12] in cli.ok("image", "list").stdout
    assert not [i for i in cli.json("image", "list") if i["name"] == "cli-bad"]

    assert "image cli-disk removed" in cli.ok("image", "rm", "cli-disk").stdout
    assert not [i for i in cli.json("image", "list") if i["name"] == "cli-disk"]
    gone = cli.run("image", "rm", "cli-disk")
    assert gone.returncode != 0 and "no host has image 'cli-disk'" in gone.stderr
