"""Shell completion for bash and zsh: commands and options, and environment and host names from the server."""

from __future__ import annotations

import subprocess

from .test_commands import DOCKER_VM


def complete(cli, shell: str, line: str, env: dict | None = None) -> list[str]:
    """What the shell would offer at the end of `line` (click's completion protocol, as the scripts call it)."""
    words = line.split(" ")
    done = cli.run(env={"_TTSTACK_COMPLETE": f"{shell}_complete", "COMP_WORDS": line,
                        "COMP_CWORD": str(len(words) - 1), **(env or {})})
    assert done.returncode == 0, done.stderr
    out = [line for line in done.stdout.splitlines() if line]
    if shell == "bash":  # "type,value" per line
        return [item.split(",", 1)[1] for item in out]
    return [value.replace("\\:", ":") for value in out[1::3]]  # zsh: type, value (":" escaped), help


def test_completion_scripts_and_names_from_the_server(fleet, cli, env_name):
    controller, agent = fleet
    cli.keygen()
    name = env_name("comp")
    cli.ok("env", "create", name, "--vm", DOCKER_VM, "--vm", DOCKER_VM)

    for shell in ("bash", "zsh"):
        assert complete(cli, shell, "ttstack en") == ["env"]
        assert set(complete(cli, shell, "ttstack env ")) >= {"create", "list", "show", "ssh", "delete", "extend"}
        assert name in complete(cli, shell, "ttstack env show ")
        assert complete(cli, shell, f"ttstack env delete {name[:6]}") == [name]
        assert complete(cli, shell, f"ttstack env ssh {name}") == [f"{name}/0", f"{name}/1"]
        assert agent.addr in complete(cli, shell, "ttstack host show ")
        assert complete(cli, shell, "ttstack env create x --den") == ["--deny-outgoing"]
    # a controller that cannot be reached completes nothing, and says nothing into the shell
    assert complete(cli, "bash", "ttstack env show ", env={"TTSTACK_URL": "http://127.0.0.1:1"}) == []

    script = cli.ok("completion", "bash").stdout
    registered = subprocess.run(["bash", "-c", f"{script}\ncomplete -p ttstack"], capture_output=True, text=True)
    assert registered.returncode == 0 and "ttstack" in registered.stdout, registered.stderr
    assert cli.ok("completion", "zsh").stdout.startswith("#compdef ttstack")
    assert cli.run("completion", "fish").returncode == 2
    cli.ok("env", "delete", name)
