"""The bytes of an image, written to an open file: from an http(s) URL (streamed; after a cut the next
connection resumes where the last one stopped, with HTTP Range) or from a local file. The sha256 is
computed from the bytes as they are written, so the file is read once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import httpx

from ttproject import errors

CHUNK = 1 << 20
# What one read from the socket yields: httpx holds bytes back until a chunk is full, so after a cut a
# large chunk size would lose what was received but not yet yielded.
NET_CHUNK = 64 << 10
Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


class FetchError(errors.UpstreamFailed):
    """The image's source failed: refused, not found, or cut more often than the attempts allow."""


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def fetch(source: str, out: BinaryIO, *, attempts: int, progress: Progress) -> str:
    """Write the source's bytes to `out` (positioned at 0, empty); the hex sha256 of what was written."""
    if is_url(source):
        return _Download(source, out, progress).run(max(1, attempts))
    return _copy_local(Path(source), out, progress)


def _copy_local(path: Path, out: BinaryIO, progress: Progress) -> str:
    digest = hashlib.sha256()
    done = 0
    try:
        total = path.stat().st_size
        with path.open("rb") as src:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                progress(done, total)
    except OSError as exc:
        raise FetchError(f"reading {path} failed after {done} bytes: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def _redacted(url: str) -> str:
    """The URL without its query: an agent-to-agent URL carries a ticket there, which logs must not show."""
    return url.split("?", 1)[0]


class _Download:
    def __init__(self, url: str, out: BinaryIO, progress: Progress):
        self.url, self.out, self.progress = url, out, progress
        self.digest = hashlib.sha256()
        self.done = 0
        self.total: int | None = None

    def run(self, attempts: int) -> str:
        last = ""
        with httpx.Client(timeout=httpx.Timeout(60, connect=10), follow_redirects=True) as http:
            for _attempt in range(attempts):
                try:
                    if self._one_connection(http):
                        return self.digest.hexdigest()
                    last = f"the connection closed after {self.done} bytes"
                except httpx.TransportError as exc:
                    last = f"{type(exc).__name__}: {exc or 'connection lost'}"
        of = f" of {self.total}" if self.total is not None else ""
        raise FetchError(f"downloading {_redacted(self.url)} failed: cut after {self.done}{of} bytes; gave up "
                         f"after {attempts} connection(s) (TTSTACK_IMAGE_FETCH_ATTEMPTS); last: {last}")

    def _restart(self):
        self.out.seek(0)
        self.out.truncate()
        self.digest, self.done = hashlib.sha256(), 0

    def _one_connection(self, http: httpx.Client) -> bool:
        """One GET from where the file stands; True once every byte is written."""
        headers = {"Accept-Encoding": "identity"}
        if self.done:
            headers["Range"] = f"bytes={self.done}-"
        with http.stream("GET", self.url, headers=headers) as response:
            if response.status_code == 416 and self.done and self.done == self.total:
                return True
            if response.status_code >= 500:
                raise httpx.RemoteProtocolError(f"{_redacted(self.url)} answered {response.status_code}")
            if response.status_code not in (200, 206):
                response.read()
                raise FetchError(f"{_redacted(self.url)} answered {response.status_code}: "
                                 f"{response.text.strip()[:200]}")
            if response.status_code == 200 and self.done:
                self._restart()  # the server ignored the Range: start over
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit():
                self.total = self.done + int(length)
            for chunk in response.iter_raw(NET_CHUNK):
                self.out.write(chunk)
                self.digest.update(chunk)
                self.done += len(chunk)
                self.progress(self.done, self.total)
        return self.total is None or self.done >= self.total

