"""Process helpers shared by the task runner and the agent's engines."""

from __future__ import annotations

import os


def pid_alive(pid: int, *, zombie_is_dead: bool = False) -> bool:
    """True while process `pid` exists (signal 0; one of another user counts as alive).

    With `zombie_is_dead=True` a process that has exited but was not reaped by its parent yet (state Z in
    /proc/PID/stat, Linux) counts as gone; where /proc cannot be read it counts as alive.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not zombie_is_dead:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
