"""Running the build tools: errors that say which step failed, and progress of the long steps."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

Log = Callable[[str], None]


class BuildError(RuntimeError):
    """An image build step failed; the message says which and why."""


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a build tool to completion; BuildError with the end of its stderr when it fails."""
    kwargs.setdefault("text", True)
    try:
        return subprocess.run(argv, check=True, capture_output=True, **kwargs)
    except FileNotFoundError as exc:
        raise BuildError(f"{argv[0]} is not installed") from exc
    except subprocess.CalledProcessError as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        raise BuildError(f"{' '.join(argv[:3])} ... failed ({exc.returncode}): {err.strip()[-2000:]}") from exc


class Steps:
    """Numbered steps of one build, each logged with its duration: ``debian-12: [2/6] mke2fs ... 9.1 s``."""

    def __init__(self, label: str, total: int, log: Log):
        self.label, self.total, self.log = label, total, log
        self.number = 0
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        self.log(f"{self.label}: {text}")

    def stream(self, title: str, argv: list[str], keep: int = 40, **kwargs) -> None:
        """Run argv as the next step, passing each line it prints on to the log as it comes."""
        self.number += 1
        prefix = f"[{self.number}/{self.total}]"
        self.say(f"{prefix} {title}")
        began = time.monotonic()
        tail: list[str] = []
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    stdin=subprocess.DEVNULL, **kwargs)
        except FileNotFoundError as exc:
            raise BuildError(f"{argv[0]} is not installed") from exc
        with proc:
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    self.say(f"{prefix}   {line}")
                    tail = (tail + [line])[-keep:]
        if proc.returncode != 0:
            raise BuildError(f"{self.label}: {title} failed ({proc.returncode}):\n" + "\n".join(tail))
        self.say(f"{prefix} {title}: done in {time.monotonic() - began:.1f} s")

    def quiet(self, title: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run argv as the next step without passing its output on (it is short or noisy)."""
        self.number += 1
        prefix = f"[{self.number}/{self.total}]"
        self.say(f"{prefix} {title}")
        began = time.monotonic()
        if "input" not in kwargs:
            kwargs["stdin"] = subprocess.DEVNULL
        result = run(argv, **kwargs)
        self.say(f"{prefix} {title}: done in {time.monotonic() - began:.1f} s")
        return result

    def finished(self, text: str) -> None:
        self.say(f"{text} ({time.monotonic() - self.started:.1f} s)")
