"""What the API accepts: VM names, OCI references, and the ranges of create's cpu/memory/disk."""

import re

# tart's VM names: letters, digits, dot, dash, underscore; no leading dot or dash (never an option).
VM_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
# registry[:port]/repo/path[:tag|@sha256:digest]; the registry must look like a host.
OCI_RE = re.compile(
    r"^(?P<registry>(?:localhost|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+)(?::\d{1,5})?)"
    r"/(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
# Static routes under api/vms/ that a VM of that name would shadow.
RESERVED_NAMES = {"available-images", "categorized", "refresh", "pull", "create"}

CPU_RANGE = (1, 64)
MEMORY_GB_RANGE = (1, 512)
DISK_GB_RANGE = (10, 4096)


def is_vm_name(value: str) -> bool:
    return bool(VM_NAME_RE.match(value))


def is_oci_ref(value: str) -> bool:
    return len(value) <= 512 and bool(OCI_RE.match(value))


def is_known_form(value: str) -> bool:
    """A name that may designate something in `tart list`: a local VM or a pulled OCI image."""
    return is_vm_name(value) or is_oci_ref(value)
