"""Checks of the fleet API's inputs (used by fleet.api.serializers and the create form) and the names the
controller derives from them.

Patterns come from ttproject.vocabulary and are anchored with \\A and \\Z: `$` would also match before a
trailing newline ("tnl\\n"). drf-spectacular writes them into the schema as ECMA `^...$`.
"""

import hashlib
import re

from django.core.validators import RegexValidator

from agent.cloudinit import validate_ssh_key as _agent_validate_ssh_key
from ttproject.vocabulary import HOSTNAME_PATTERN, HOSTNAME_RE, NAME_PATTERN

ENV_ID = RegexValidator(rf"\A{NAME_PATTERN}\Z",
                        "must be 1-128 characters of A-Z a-z 0-9 . _ - and must not start with a dot")
IMAGE = RegexValidator(r"\A[^\s\x00-\x1f\x7f]+\Z", "must not contain blanks or control characters")
ADDR = RegexValidator(r"\A(https?://)?[A-Za-z0-9.\-\[\]:]+:\d{1,5}/?\Z", "must be host:port (e.g. 10.0.0.2:9100)")
# Keys go in an HTTP header (Authorization: Bearer KEY): visible ASCII, no blanks.
API_KEY = RegexValidator(r"\A[\x21-\x7e]*\Z", "must be visible ASCII characters without blanks")
HOSTNAME = RegexValidator(rf"\A{HOSTNAME_PATTERN}\Z", "must be one RFC 1123 label")


def validate_ssh_key(key: str) -> str:
    """Return the normalised key or raise ValueError with the reason: the agent's own check, so controller
    and agent accept exactly the same keys."""
    return _agent_validate_ssh_key(key)


def vm_id_for(env_id: str, index: int) -> str:
    """`<env>-<index>`, shortened with a digest when it would pass the agent's 128 characters."""
    vm_id = f"{env_id}-{index}"
    if len(vm_id) <= 128:
        return vm_id
    digest = hashlib.sha1(env_id.encode()).hexdigest()[:10]
    return f"{env_id[:100]}-{digest}-{index}"


def hostname_for(vm_id: str) -> str:
    """An RFC 1123 label (1-63 of letters, digits, '-', no '-' first or last) derived from a VM id
    (ids may hold . and _)."""
    label = re.sub(r"[^A-Za-z0-9-]", "-", vm_id).strip("-")[:63].strip("-")
    return label if HOSTNAME_RE.match(label) else "vm"
