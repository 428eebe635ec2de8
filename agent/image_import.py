"""`POST /api/images`: import an image from an http(s) URL or a local file, with its sha256, as a task.

The bytes go to `.NAME.import-TASK` in the image directory (same filesystem: the final rename is atomic),
are fsync'ed, and only when their sha256 matches does the image appear: a disk by one rename to
NAME.qcow2|NAME.raw, a docker-archive by `docker load` of the checked file. A wrong checksum, a cut the
retries do not cover, or a file that is not of its format fails the task and leaves nothing behind.
Progress (bytes, total, percent) is the running task's `result`, so the task WebSocket shows it.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from agent import conf, image_store
from agent.image_fetch import FetchError, fetch, is_url
from ttproject import errors
from ttproject.tasks import runner
from ttproject.tasks.models import Task

ACTION = "agent.image_import"
SUFFIX_FORMATS = {".qcow2": "qcow2", ".raw": "raw", ".img": "raw", ".tar": "docker-archive"}
REPORT_EVERY = 0.5  # seconds between two progress updates of the task


@dataclass
class ImportRequest:
    name: str
    source: str  # http(s) URL or absolute path on this host
    sha256: str
    format: str


def format_of(source: str, given: str | None) -> str:
    """The request's format, else the one the source's suffix names."""
    if given:
        return given
    suffix = Path(source.split("?", 1)[0].split("#", 1)[0]).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise errors.Invalid("format: cannot tell the format from the source's name; give format qcow2, raw or "
                             "docker-archive", errors={"format": ["required for this source"]})
    return SUFFIX_FORMATS[suffix]


def _check_source(source: str) -> None:
    if is_url(source):
        return
    path = Path(source)
    if not path.is_absolute():
        raise errors.Invalid("source: give an http(s) URL or an absolute path on the agent's host",
                             errors={"url": ["not an http(s) URL"]})
    if not path.is_file():
        raise errors.Invalid(f"path: {source} is not a file on this host", errors={"path": ["no such file"]})


def start_import(name: str, source: str, sha256: str, fmt: str | None) -> Task:
    """Check the request (nothing is fetched yet) and start its task; 409 when the name exists here."""
    fmt = format_of(source, fmt)
    _check_source(source)
    name = image_store.check_target_name(name, fmt)
    if image_store.exists(name, fmt):
        raise errors.Conflict(f"image {name!r} exists on this host; delete it first to replace it")
    request = ImportRequest(name=name, source=source, sha256=sha256.lower(), format=fmt)
    return runner.submit_here(ACTION, target=name, params=asdict(request))


class _Reporter:
    """Progress of the running task, at most every REPORT_EVERY seconds, and a log line every 10%."""

    def __init__(self, ctx, name: str):
        self.ctx, self.name = ctx, name
        self.last = 0.0
        self.logged_tenth = -1

    def state(self, done: int, total: int | None) -> dict:
        percent = round(100.0 * done / total, 1) if total else None
        return {"name": self.name, "bytes": done, "total": total, "percent": percent}

    def __call__(self, done: int, total: int | None):
        now = time.monotonic()
        if now - self.last < REPORT_EVERY and done != total:
            return
        self.last = now
        state = self.state(done, total)
        self.ctx.set(result=state)
        tenth = int(state["percent"] // 10) if state["percent"] is not None else -1
        if tenth > self.logged_tenth:
            self.logged_tenth = tenth
            self.ctx.log(f"{self.name}: {done} of {total} bytes ({state['percent']}%)")


def run(ctx) -> dict:
    """The job: fetch, check the sha256, then install; the temporary file is gone whatever happens."""
    req = ImportRequest(**ctx.params)
    docker = req.format == "docker-archive"
    directory = image_store.disk_dir() if not docker else Path(settings.DATA_DIR)
    tmp = directory / f".{req.name.replace('/', '_')}.import-{ctx.id}"
    report = _Reporter(ctx, req.name)
    source = req.source.split("?", 1)[0]
    ctx.log(f"importing {req.name} ({req.format}) from {source}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            try:
                digest = fetch(req.source, out, attempts=settings.AGENT_IMAGE_FETCH_ATTEMPTS, progress=report)
            except FetchError as exc:
                raise runner.TaskFailed(str(exc), result=report.state(*_size(tmp))) from exc
            out.flush()
            os.fsync(out.fileno())
        done, _ = _size(tmp)
        if digest != req.sha256:
            raise runner.TaskFailed(f"sha256 mismatch for {req.name}: expected {req.sha256}, the {done} bytes "
                                    f"from {source} have {digest}; nothing was kept",
                                    result=report.state(done, done))
        report(done, done)
        try:
            if docker:
                image_id = image_store.load_docker_archive(tmp, req.name)
                ctx.log(f"docker load: {req.name} is {image_id}")
            elif req.format == "image-dir":
                ctx.log(f"{req.name} is in place: {image_store.install_dir(tmp, req.name)}")
            else:
                path = image_store.install_disk(tmp, req.name, req.format, digest)
                ctx.log(f"{req.name} is in place: {path}")
        except errors.DomainError as exc:
            raise runner.TaskFailed(f"{req.name}: {exc}", result=report.state(done, done)) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return {**report.state(done, done), "sha256": digest, "format": req.format}


def fail_interrupted() -> None:
    """At start-up: imports the last agent process was running when it died fail, and their temporary
    files go (the agent runs no worker that could hand them out again)."""
    interrupted = Task.objects.filter(action=ACTION, status__in=("pending", "running"))
    interrupted.update(status="failed", error="the agent stopped during the import; start it again",
                       finished_at=timezone.now(), updated_at=timezone.now(), version=F("version") + 1)
    for directory in {conf.image_dir(), Path(settings.DATA_DIR)}:
        for leftover in directory.glob(".*.import-*") if directory.is_dir() else ():
            leftover.unlink(missing_ok=True)


def _size(path: Path) -> tuple[int, int]:
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return size, size
