"""Checks run by `ttstack controller` before it migrates and serves."""

from . import conf


def prepare():
    if conf.PLACEMENT not in ("best-fit", "spread"):
        raise SystemExit(f"TTSTACK_PLACEMENT must be best-fit or spread, not {conf.PLACEMENT!r}")
    if conf.HEARTBEAT <= 0 or conf.HOST_TIMEOUT <= conf.HEARTBEAT:
        raise SystemExit("TTSTACK_HOST_TIMEOUT must be larger than TTSTACK_HEARTBEAT (both > 0)")
    if conf.CPU_OVERCOMMIT <= 0:
        raise SystemExit("TTSTACK_CPU_OVERCOMMIT must be > 0")
