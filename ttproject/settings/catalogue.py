"""How a variable of the catalogue is declared, read from the environment and documented.

A `Variable` names its environment variable, the Django setting that holds its value, its type, its default
and what it means. `read()` turns the environment into setting values (typed, with the defaults), and
`render_markdown()` writes docs/settings.md from the same declarations, so code and docs cannot drift.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

Values = dict[str, Any]


def _string(raw: str) -> str:
    return raw.strip()


def _words(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _path(raw: str) -> Path:
    return Path(raw.strip()).expanduser()


def _port_range(raw: str) -> tuple[int, int]:
    low, high = (int(part) for part in raw.split("-", 1))
    if not 1 <= low <= high <= 65535:
        raise ValueError("not within 1-65535")
    return low, high


def _whole_number(raw: str) -> int:
    return int(float(raw))  # "21600" and "21600.0" both mean 21600 seconds


# kind -> (parser of the raw text, what the docs call it). django-environ parses the booleans and numbers.
KINDS: dict[str, tuple[Callable[[str], Any], str]] = {
    "string": (_string, "string"),
    "url": (lambda raw: raw.strip().rstrip("/"), "URL"),
    "integer": (lambda raw: environ.Env.parse_value(raw.strip(), int), "integer"),
    "seconds": (lambda raw: environ.Env.parse_value(raw.strip(), float), "number (seconds)"),
    "whole seconds": (_whole_number, "integer (seconds)"),
    "number": (lambda raw: environ.Env.parse_value(raw.strip(), float), "number"),
    "boolean": (lambda raw: environ.Env.parse_value(raw, bool), "boolean (1/true/yes/on)"),
    "list": (_words, "comma-separated list"),
    "path": (_path, "path"),
    "port range": (_port_range, "LOW-HIGH"),
}


@dataclass(frozen=True)
class Variable:
    """One environment variable. `default` is a value, or a function of the values read before it
    (declaration order); `default_doc` says in words what a computed default is. `setting` None means the
    variable is read by the `ttstack` launcher or passed between its processes, never by Django code."""

    env: str
    setting: str | None
    kind: str
    default: Any
    doc: str
    default_doc: str | None = None
    choices: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.env}: unknown kind {self.kind!r}")

    def parse(self, raw: str) -> Any:
        try:
            value = KINDS[self.kind][0](raw)
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"{self.env}={raw!r} is not a valid {self.type_doc}: {exc}") from None
        if self.choices and value not in self.choices:
            raise ImproperlyConfigured(f"{self.env} must be one of {', '.join(self.choices)}, not {raw!r}")
        return value

    def value(self, environment: dict[str, str], known: Values) -> Any:
        """The typed value: the variable when it is set and not blank, else the default."""
        raw = environment.get(self.env)
        if raw is not None and raw.strip():
            return self.parse(raw)
        return self.default(known) if callable(self.default) else self.default

    @property
    def type_doc(self) -> str:
        return " | ".join(self.choices) if self.choices else KINDS[self.kind][1]

    @property
    def shown_default(self) -> str:
        if self.default_doc is not None:
            return self.default_doc
        if self.default is None or self.default == "" or self.default == []:
            return "unset"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, tuple):
            return "-".join(str(part) for part in self.default)
        if isinstance(self.default, float) and self.default.is_integer():
            return str(int(self.default))
        return f"`{self.default}`" if isinstance(self.default, str) else str(self.default)


@dataclass(frozen=True)
class Group:
    title: str
    intro: str
    variables: tuple[Variable, ...]


def read(groups: Iterable[Group], environment: dict[str, str] | None = None) -> Values:
    """Setting name -> typed value for every variable that has a setting."""
    environment = os.environ if environment is None else environment
    values: Values = {}
    for group in groups:
        for variable in group.variables:
            value = variable.value(environment, values)
            if variable.setting:
                values[variable.setting] = value
    return values


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(groups: Iterable[Group]) -> str:
    lines = [
        "# Settings",
        "",
        "<!-- Generated from ttproject/settings/variables.py by `python -m ttproject.settings`;",
        "     tests/core/test_settings.py fails when this file and the declarations differ. -->",
        "",
        "Every role is configured by environment variables only. Each one is read once, typed, into the",
        "Django setting named beside it; code reads the setting (through `django.conf.settings` or the app's",
        "`conf` module), so tests change a value with `override_settings` or pytest-django's `settings`",
        "fixture. A variable set to an empty string counts as unset. A value that cannot be parsed stops the",
        "process at start with a message naming the variable.",
    ]
    for group in groups:
        lines += ["", f"## {group.title}", "", group.intro, "",
                  "| variable | setting | type | default | meaning |", "|---|---|---|---|---|"]
        for v in group.variables:
            setting = f"`{v.setting}`" if v.setting else "—"
            lines.append(f"| `{v.env}` | {setting} | {_cell(v.type_doc)} | {_cell(v.shown_default)} | "
                         f"{_cell(v.doc)} |")
    return "\n".join(lines) + "\n"

