"""Following a task to its end: from the task WebSocket (`/ws/tasks/{id}?token=`), by polling
`GET /api/tasks/{id}` when the socket cannot be opened or drops early. For an environment's task the
environment is re-read on every change (and every second), so each VM's state, host, SSH port and
readiness show as they move: one line per VM updated in place in a terminal (rich Live), plain lines
when stderr is not a terminal. Ctrl-C stops the watching, never the task."""

from __future__ import annotations

import json
import time

import click

from .api import USER_AGENT, Api
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NOT_FOUND, CliError
from .output import console
from .vms import FINAL_VM_STATES, readiness, ssh_text, vm_name

TERMINAL = ("completed", "failed")
BUSY_ENV_STATES = ("creating", "starting", "stopping", "deleting")
TICK = 1.0
SETTLE_TIMEOUT = 900.0  # after its task, how long an environment may stay busy before we stop waiting


def _socket_states(api: Api, task_id: str):
    """The task from the WebSocket, None every TICK meanwhile; returns the last task seen (or None)."""
    from websockets.sync.client import connect

    last = None
    with connect(api.ws_url(task_id), open_timeout=10, close_timeout=2, user_agent_header=USER_AGENT) as ws:
        while last is None or last["status"] not in TERMINAL:
            try:
                message = ws.recv(timeout=TICK)
            except TimeoutError:
                yield None
                continue
            task = json.loads(message)
            if "status" not in task:  # {"detail": "Task ... not found."}: polling reports it properly
                return last
            last = task
            yield task
    return last


def task_states(api: Api, task_id: str, notes: list[str] | None = None):
    """Each new state of the task until it ends (None every TICK meanwhile)."""
    last = None
    try:
        last = yield from _socket_states(api, task_id)
        if last and last["status"] in TERMINAL:
            return
    except Exception as exc:  # any failure of the socket (refused, dropped, bad frame): poll instead
        if notes is not None:
            notes.append(f"watching by polling ({type(exc).__name__}: {exc})")
    while True:
        task = api.get(f"/api/tasks/{task_id}")
        if task != last:
            last = task
            yield task
        if task["status"] in TERMINAL:
            return
        time.sleep(TICK)
        yield None


def env_of(task: dict) -> str | None:
    """The environment a fleet task works on (fleet.env_create, fleet.env_delete, ...)."""
    return task.get("target") if str(task.get("action", "")).startswith("fleet.env") else None


class Watch:
    def __init__(self, api: Api, task_id: str, env_id: str | None = None, live: bool | None = None):
        self.api, self.task_id, self.env_id = api, task_id, env_id
        self.err = console(stderr=True)
        self.live = self.err.is_terminal if live is None else live
        self.task: dict | None = None
        self.env: dict | None = None
        self.env_gone = False
        self.notes: list[str] = []
        self._printed: dict[str, str] = {}
        self._logs_seen = 0
        self._spinners: dict[str, object] = {}

    # ------------------------------------------------------------------------------------------ state
    def _refresh_env(self):
        if not self.env_id or self.env_gone:
            return
        try:
            self.env = self.api.get(f"/api/envs/{self.env_id}")
        except CliError as exc:
            if exc.exit_code != EXIT_NOT_FOUND:
                raise
            self.env_gone = True

    def _vm_lines(self) -> list[tuple[str, str, str]]:
        """(name, state, details) per VM."""
        out = []
        for vm in (self.env or {}).get("vms") or []:
            state = "deleted" if self.env_gone else str(vm.get("state"))
            details = [f"host {vm['host_addr']}" if vm.get("host_addr") else "not placed"]
            if ssh_text(vm) != "-":
                details.append(f"ssh {ssh_text(vm)}")
            if readiness(vm) not in ("-", "no ssh"):
                details.append(readiness(vm))
            if vm.get("error"):
                details.append(vm["error"])
            out.append((vm_name(self.env_id, vm), state, ", ".join(details)))
        return out

    def _done(self) -> bool:
        if not self.task or self.task["status"] not in TERMINAL:
            return False
        # After the task, an environment may still be settling (VMs getting ready): wait for its state.
        return self.env_gone or self.env is None or self.env.get("state") not in BUSY_ENV_STATES \
            or self.task["status"] == "failed"

    # ------------------------------------------------------------------------------------------ output
    def _plain(self):
        for note in self.notes:
            self.err.print(note)
        self.notes.clear()
        lines = {"task": f"task {self.task_id} {self.task.get('action')}: {self.task['status']}"} if self.task else {}
        lines.update({name: f"{name}: {state} ({details})" for name, state, details in self._vm_lines()})
        if self.env and not self.env_gone:
            lines["env"] = f"env {self.env_id}: {self.env.get('state')}"
        for key, text in lines.items():
            if self._printed.get(key) != text:
                self.err.print(text, markup=False, highlight=False)
                self._printed[key] = text
        logs = (self.task or {}).get("logs") or []
        for line in logs[self._logs_seen:]:
            self.err.print(f"  {line}", markup=False, highlight=False)
        self._logs_seen = len(logs)

    def _icon(self, key: str, state: str, final: bool):
        from rich.spinner import Spinner
        from rich.text import Text

        if final:
            ok = state not in ("failed",)
            return Text("✓" if ok else "✗", style="green" if ok else "red")
        return self._spinners.setdefault(key, Spinner("dots", style="cyan"))

    def _render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        status = self.task["status"] if self.task else "connecting"
        action = self.task.get("action", "") if self.task else ""
        env_state = f" · env {self.env.get('state')}" if self.env and not self.env_gone else ""
        header = Table.grid(padding=(0, 1))
        header.add_row(self._icon("task", status, status in TERMINAL),
                       Text(f"task {self.task_id} {action}".rstrip(), style="bold"), Text(status + env_state))
        vms = Table.grid(padding=(0, 2))
        for name, state, details in self._vm_lines():
            vms.add_row(self._icon(name, state, state in FINAL_VM_STATES), name, state, Text(details, style="dim"))
        parts = [header, vms]
        logs = (self.task or {}).get("logs") or []
        if logs and status not in TERMINAL:
            parts.append(Text(f"  {logs[-1][:160]}", style="dim"))
        return Group(*parts)

    # ------------------------------------------------------------------------------------------ loop
    def _follow(self, show):
        last_env_read = 0.0
        for task in task_states(self.api, self.task_id, self.notes):
            if task is not None:
                self.task = task
            if task is not None or time.monotonic() - last_env_read >= TICK:
                self._refresh_env()
                last_env_read = time.monotonic()
            show()
        settle_by = time.monotonic() + SETTLE_TIMEOUT
        while not self._done() and time.monotonic() < settle_by:  # the task ended; the env is settling
            time.sleep(TICK)
            self._refresh_env()
            show()

    def run(self) -> dict:
        """Follow to the end and return the final task (see `failure()`); Ctrl-C exits 130."""
        try:
            if self.live:
                from rich.live import Live

                with Live(self._render(), console=self.err, refresh_per_second=8, transient=False) as live:
                    self._follow(lambda: live.update(self._render()))
            else:
                self._follow(self._plain)
        except KeyboardInterrupt:
            click.echo(f"\nStopped watching; task {self.task_id} goes on. Resume with: ttstack task watch "
                       f"{self.task_id}", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        return self.task

    def failure(self) -> CliError | None:
        """Why the operation failed (exit 1), or None: the task failed, or the environment ended failed."""
        if self.task and self.task["status"] == "failed":
            return CliError(f"task {self.task_id} ({self.task.get('action')}) failed: "
                            f"{self.task.get('error') or 'no reason given'}", EXIT_FAILED)
        if self.env and not self.env_gone and self.env.get("state") == "failed":
            return CliError(f"environment {self.env_id} failed: {self.env.get('error') or 'no reason given'}")
        return None

    def check(self) -> dict:
        """run(), then raise the failure if there is one."""
        task = self.run()
        if (error := self.failure()) is not None:
            raise error
        return task
