"""Where the client keeps its controllers: `$XDG_CONFIG_HOME/ttstack/config.toml` (default
`~/.config/ttstack/config.toml`), a file 0600 from the moment it exists, in a directory 0700:

    default_profile = "default"

    [profiles.default]
    url = "http://127.0.0.1:9200"
    token = "..."            # the operators' key or an owner's personal token; absent for an open API

The profile used is `--profile`, else TTSTACK_PROFILE, else `default_profile`, else "default".
TTSTACK_URL and TTSTACK_TOKEN override the profile's url and token (and work with no config file at all).
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from .errors import EXIT_AUTH, EXIT_USAGE, CliError

DEFAULT_PROFILE = "default"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "ttstack" / "config.toml"


def load() -> dict:
    path = config_path()
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}", EXIT_USAGE) from exc


def save(config: dict) -> Path:
    """Write the whole config atomically: a new 0600 file (mkstemp) renamed over the old one."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".toml")
    try:
        with os.fdopen(fd, "wb") as out:
            tomli_w.dump(config, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def store_profile(name: str, url: str, token: str | None) -> Path:
    config = load()
    profiles = config.setdefault("profiles", {})
    profiles[name] = {"url": url, **({"token": token} if token else {})}
    config.setdefault("default_profile", name)
    return save(config)


@dataclass(frozen=True)
class Target:
    """The controller a command talks to."""

    url: str
    token: str | None
    profile: str


def profile_name(chosen: str | None, config: dict | None = None) -> str:
    config = load() if config is None else config
    return chosen or os.environ.get("TTSTACK_PROFILE") or config.get("default_profile") or DEFAULT_PROFILE


def resolve(chosen_profile: str | None) -> Target:
    config = load()
    name = profile_name(chosen_profile, config)
    profile = config.get("profiles", {}).get(name, {})
    if chosen_profile and not profile and not os.environ.get("TTSTACK_URL"):
        raise CliError(f"no profile {name!r} in {config_path()} (ttstack login URL --profile {name})", EXIT_USAGE)
    url = os.environ.get("TTSTACK_URL") or profile.get("url")
    token = os.environ.get("TTSTACK_TOKEN") or profile.get("token") or None
    if not url:
        raise CliError("no controller configured: run `ttstack login URL` (or set TTSTACK_URL)", EXIT_AUTH)
    return Target(url=url.rstrip("/"), token=token, profile=name)
