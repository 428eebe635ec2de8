"""What the API accepts: VM names, OCI references, and the ranges of create's cpu/memory/disk.

The patterns are written once and used three ways: compiled here (anchored with \\A...\\Z: `$` would also
accept a trailing newline), in the serializers' RegexValidators, and, from those, in the OpenAPI schema.
"""

import re

# tart's VM names: letters, digits, dot, dash, underscore; no leading dot or dash (never an option).
VM_NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
# registry[:port]/repo/path[:tag|@sha256:digest]; the registry must look like a host.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
OCI_PATTERN = (
    r"(?:localhost|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+)(?::[0-9]{1,5})?"
    rf"/{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)
# Anything `tart list` may name: a local VM or a pulled OCI image.
KNOWN_FORM_PATTERN = rf"(?:{VM_NAME_PATTERN}|{OCI_PATTERN})"
MAX_OCI_LENGTH = 512


def anchored(pattern: str) -> re.Pattern:
    return re.compile(rf"\A{pattern}\Z")


VM_NAME_RE = anchored(VM_NAME_PATTERN)
OCI_RE = anchored(OCI_PATTERN)
KNOWN_FORM_RE = anchored(KNOWN_FORM_PATTERN)

# Static routes under api/vms/ that a VM of that name would shadow.
RESERVED_NAMES = {"available-images", "categorized", "refresh", "pull", "create"}

CPU_RANGE = (1, 64)
MEMORY_GB_RANGE = (1, 512)
DISK_GB_RANGE = (10, 4096)


def is_vm_name(value: str) -> bool:
    return bool(VM_NAME_RE.match(value))


def is_oci_ref(value: str) -> bool:
    return len(value) <= MAX_OCI_LENGTH and bool(OCI_RE.match(value))


def is_known_form(value: str) -> bool:
    """A name that may designate something in `tart list`: a local VM or a pulled OCI image."""
    return is_vm_name(value) or is_oci_ref(value)
