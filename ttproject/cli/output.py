"""How results leave the client: aligned tables for people, or the API's own objects as JSON or YAML
(`-o json`, `-o yaml`) for scripts. Progress and errors go to stderr, results to stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import click

FORMATS = ("table", "json", "yaml")

output_option = click.option("-o", "--output", "fmt", type=click.Choice(FORMATS), default="table",
                             show_default=True, help="table for people; json or yaml: the API's objects")


def console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream, stderr=stderr)
    # Not a terminal: no colour, and wide enough that rich never folds a cell.
    return Console(file=stream, stderr=stderr, width=400, no_color=True, highlight=False)


def emit(data, fmt: str, render: Callable[[object], object] | None = None) -> None:
    """`data` as json/yaml, or as the rich renderable (or text) `render(data)` returns."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif fmt == "yaml":
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
    elif render is not None:
        out = render(data)
        if isinstance(out, str):
            click.echo(out)
            return
        con = console()
        with con.capture() as captured:
            con.print(out)
        # rich pads every cell to its column's width: no trailing blanks for people's terminals or for grep
        click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()), color=con.is_terminal)


def table(columns: Iterable[str], rows: Iterable[Iterable[object]], title: str | None = None):
    from rich import box
    from rich.table import Table

    grid = Table(box=box.SIMPLE_HEAD if sys.stdout.isatty() else None, pad_edge=False, show_edge=False,
                 title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column, no_wrap=True, overflow="ignore")
    for row in rows:
        grid.add_row(*("-" if cell in (None, "") else str(cell) for cell in row))
    return grid


def fields(pairs: Iterable[tuple[str, object]]):
    """`key: value` lines, the keys aligned."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for key, value in pairs:
        grid.add_row(key, "-" if value in (None, "") else str(value))
    return grid


def parse_time(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=UTC)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def when(value) -> str:
    """A timestamp in local time, to the second."""
    moment = parse_time(value)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def until(value) -> str:
    """'in 1h30m' / '5m ago' for a timestamp; 'never' for none."""
    from .units import format_duration

    moment = parse_time(value)
    if moment is None:
        return "never"
    delta = (moment - datetime.now(UTC)).total_seconds()
    return f"in {format_duration(delta)}" if delta >= 0 else f"{format_duration(-delta)} ago"
