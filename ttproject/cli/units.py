"""Values as people write them: durations (`90m`, `2h`, `1d`, `1h30m`, plain seconds), sizes in MiB
(`512M`, `4G`, `1.5G`, plain MiB) and VM specs (`image=debian-12,engine=qemu,cpu=1,mem=1G,ports=80,443`)."""

from __future__ import annotations

import re

import click

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
SIZE_UNITS = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024, "t": 1024 ** 2, "tb": 1024 ** 2,
              "tib": 1024 ** 2}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
VM_KEYS = {"image", "engine", "cpu", "mem", "disk", "ports", "deny_outgoing"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def parse_duration(text: str) -> int:
    """Seconds. `0` or `never` = no expiry."""
    text = str(text).strip().lower()
    if text in ("never", "0"):
        return 0
    if text.isdigit():
        return int(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration (e.g. 90m, 2h, 1d, 1h30m, or seconds)")
    return sum(int(n) * DURATION_UNITS[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds <= 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s"):
        n, seconds = divmod(seconds, DURATION_UNITS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out[:2])


def parse_size(text: str) -> int:
    """MiB."""
    match = _SIZE.fullmatch(str(text).strip().lower())
    if not match or match.group(2) not in SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (e.g. 512M, 4G, or MiB)")
    mib = float(match.group(1)) * SIZE_UNITS[match.group(2)]
    if mib != int(mib) or mib < 1:
        raise ValueError(f"{text!r} is not a whole number of MiB")
    return int(mib)


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{text!r} is not true or false")


def parse_port(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port (1-65535)")
    return int(text)


def parse_vm_spec(text: str) -> dict:
    """`KEY=VALUE,...` -> a VmSpec. A first item without `=` is the image; items without `=` after `ports=`
    are more ports (`ports=80,443`); `deny_outgoing` alone means true."""
    spec: dict = {}
    last_key = None
    for i, item in enumerate(part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower().replace("-", "_")
        if not sep:
            if i == 0:
                key, value = "image", item
            elif last_key == "ports":
                spec["ports"].append(parse_port(item))
                continue
            elif key == "deny_outgoing":
                value = "true"
            else:
                raise ValueError(f"{item!r}: expected KEY=VALUE (keys: {', '.join(sorted(VM_KEYS))})")
        if key not in VM_KEYS:
            raise ValueError(f"unknown VM key {key!r} (keys: {', '.join(sorted(VM_KEYS))})")
        value = value.strip()
        if key in ("mem", "disk"):
            spec[key] = parse_size(value)
        elif key == "cpu":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"cpu={value!r} is not a positive whole number")
            spec[key] = int(value)
        elif key == "ports":
            spec["ports"] = [parse_port(p) for p in value.split("+") if p.strip()] if value else []
        elif key == "deny_outgoing":
            spec[key] = parse_bool(value)
        else:
            spec[key] = value
        last_key = key
    if not spec.get("image"):
        raise ValueError("a VM needs an image (image=NAME)")
    return spec


class _Parsed(click.ParamType):
    """A click type from one of the parsers above (errors are usage errors: exit 2)."""

    def __init__(self, name: str, parse):
        self.name, self.parse = name, parse

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Parsed("duration", parse_duration)
SIZE = _Parsed("size", parse_size)
VM_SPEC = _Parsed("vm", parse_vm_spec)
