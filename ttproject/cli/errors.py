"""The client's exit codes and the one error type every command raises (printed as `Error: ...` on stderr,
never as a traceback)."""

from __future__ import annotations

import click

EXIT_OK = 0
EXIT_FAILED = 1  # the request or the task failed (including routes this controller does not offer)
EXIT_USAGE = 2  # the command line is wrong (click's own usage errors use 2 as well)
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4  # no credentials, wrong credentials, or not allowed
EXIT_INTERRUPTED = 130  # Ctrl-C while watching: the operation goes on


class CliError(click.ClickException):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_for(status: int) -> int:
    if status in (401, 403):
        return EXIT_AUTH
    if status == 404:
        return EXIT_NOT_FOUND
    return EXIT_FAILED
