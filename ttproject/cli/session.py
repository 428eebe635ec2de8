"""The state one client command works with: the chosen profile and, made when first needed, the API client."""

from __future__ import annotations

import functools

import click

from .api import Api
from .config import resolve
from .output import output_option


class Session:
    def __init__(self, profile: str | None):
        self.profile = profile
        self._api: Api | None = None

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api(resolve(self.profile))
        return self._api


def current_session() -> Session:
    ctx = click.get_current_context()
    session = ctx.find_object(Session)
    if session is None:  # shell completion parses without running the group's callback
        session = Session(ctx.find_root().params.get("profile"))
        ctx.find_root().obj = session
    return session


def with_api(command):
    """Pass the API client as the command's first argument."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(current_session().api, *args, **kwargs)

    return wrapper


def api_command(command):
    """with_api, plus the `-o table|json|yaml` option every such command has."""
    return output_option(with_api(command))
