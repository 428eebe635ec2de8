"""Domain errors: what went wrong, in the words of the domain. Domain code (agent lifecycle, fleet
lifecycle, localvm jobs) raises these; only the API layer turns them into HTTP answers
(`ttproject.api.exceptions.json_exception_handler`), so the same code serves the API, the admin,
management commands and jobs.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class. `errors` optionally maps field names to messages (for request checks)."""

    def __init__(self, message: str, *, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors


class Invalid(DomainError):
    """The request itself is wrong (a bad name, an unknown image, a malformed key)."""


class NotFound(DomainError):
    """The thing asked for does not exist (for this caller)."""


class Conflict(DomainError):
    """The request clashes with the current state (exists already, busy, wrong state)."""


class Refused(DomainError):
    """A valid request that cannot be carried out here and now (no capacity, engine missing, quota)."""


class UpstreamFailed(DomainError):
    """A host agent, engine or outside service failed or did not answer."""


class NotSupported(DomainError):
    """Not available in this build or on this platform."""
