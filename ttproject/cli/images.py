"""`ttstack image ...`: images across the fleet (list), put on hosts (import), removed (rm). `image build`
(a server command) builds a bundled image on this machine."""

from __future__ import annotations

import click

from .api import Api, segment
from .output import emit, table
from .session import api_command
from .watch import Watch


@click.group("image", short_help="Images: list, import, rm; build here.", help="Images: list the fleet's, import onto hosts, remove; build the bundled ones here.")
def image_group():
    pass


def _size(value) -> str:
    try:
        size = float(value)
    except (TypeError, ValueError):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def _sha256s(image: dict) -> str:
    """The short sha256 the hosts report (several when they differ), "-" when none is known."""
    found = sorted({h.get("sha256") or "" for h in image.get("hosts") or []} - {""})
    return ",".join(sha[:12] for sha in found) or "-"


def render_images(images: list):
    return table(("NAME", "KIND", "FORMAT", "SIZE", "SHA256", "ENGINES", "HOSTS"),
                 [(i.get("name"), i.get("kind"), i.get("format"), _size(i.get("size")), _sha256s(i),
                   ",".join(i.get("engines") or []), " ".join(h.get("addr", "") for h in i.get("hosts") or []))
                  for i in images])


@image_group.command("list", help="Every image some host has, with the hosts that have it.")
@api_command
def image_list(api: Api, fmt):
    emit(api.get("/api/images"), fmt, render_images)


def _host_ids(api: Api, refs) -> list[int]:
    from .hosts import host_id

    return [host_id(api, ref) for ref in refs]


@image_group.command("import", help="Put an image on hosts, from a URL or from a host that has it.")
@click.argument("name")
@click.option("--url", default=None, help="http(s) URL of a qcow2/raw disk or a docker-archive tarball")
@click.option("--from-host", "source", default=None, help="copy it from this host (id, addr or hostname)")
@click.option("--sha256", default=None, help="the file's sha256 (required with --url)")
@click.option("--format", "image_format", type=click.Choice(["qcow2", "raw", "docker-archive"]), default=None,
              help="default: from the URL")
@click.option("--host", "hosts", multiple=True, help="target host (repeatable; default: every host)")
@click.option("--no-wait", is_flag=True, help="return at once with the task")
@api_command
def image_import(api: Api, name, url, source, sha256, image_format, hosts, no_wait, fmt):
    if bool(url) == bool(source):
        raise click.UsageError("give exactly one of --url URL or --from-host HOST")
    if url and not sha256:
        raise click.UsageError("--url needs --sha256 (the image becomes visible only once it matches)")
    body = {"name": name, **({"url": url} if url else {}), **({"sha256": sha256} if sha256 else {}),
            **({"format": image_format} if image_format else {})}
    if source:
        body["source_host"] = _host_ids(api, [source])[0]
    if hosts:
        body["hosts"] = _host_ids(api, hosts)
    reply = api.post("/api/images", body, feature="image import")
    task_id = reply.get("task") if isinstance(reply, dict) else None
    if task_id and not no_wait:
        reply = Watch(api, task_id).check()
    emit(reply, fmt, lambda r: f"image {name}: task {task_id} {r.get('status', 'started') if r else ''}")


@image_group.command("rm", help="Remove an image from hosts (refused while a VM uses it).")
@click.argument("name")
@click.option("--host", "hosts", multiple=True, help="only from this host (repeatable; default: every host)")
@api_command
def image_rm(api: Api, name, hosts, fmt):
    params = {"host": [str(i) for i in _host_ids(api, hosts)]} if hosts else None
    reply = api.call("DELETE", f"/api/images/{segment(name)}", params=params, feature="image rm")
    task_id = reply.get("task") if isinstance(reply, dict) else None
    if task_id:
        reply = Watch(api, task_id).check()
    emit(reply if reply is not None else {"name": name, "deleted": True}, fmt, lambda _r: f"image {name} removed")
