"""Input checks shared by the API and the admin."""

import hashlib
import re

try:  # the agent's check, so controller and agent accept exactly the same keys
    from agent.cloudinit import validate_ssh_key as _agent_validate
except ImportError:  # pragma: no cover - the agent app is always installed in this project
    _agent_validate = None

ENV_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
ADDR = re.compile(r"^(https?://)?[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


def env_id_error(value: str) -> str | None:
    if not isinstance(value, str) or not ENV_ID.match(value):
        return "must be 1-128 characters of A-Z a-z 0-9 . _ -"
    if value.startswith("."):
        return "must not start with a dot"
    return None


def validate_ssh_key(key: str) -> str:
    """Return the normalised key or raise ValueError with the reason."""
    if _agent_validate is not None:
        return _agent_validate(key)
    raise ValueError("no SSH key validator available")  # pragma: no cover


def vm_id_for(env_id: str, index: int) -> str:
    """`<env>-<index>`, shortened with a digest when it would pass the agent's 128 characters."""
    vm_id = f"{env_id}-{index}"
    if len(vm_id) <= 128:
        return vm_id
    digest = hashlib.sha1(env_id.encode()).hexdigest()[:10]
    return f"{env_id[:100]}-{digest}-{index}"


def hostname_for(vm_id: str) -> str:
    """A valid RFC 1123 label derived from a VM id (ids may hold . and _)."""
    label = re.sub(r"[^A-Za-z0-9-]", "-", vm_id).strip("-")[:63].strip("-")
    return label or "vm"
