"""Start one process of a test host: join its cgroup, prepare the mount namespace, then exec it.

    ip netns exec NS python -m tests.netfleet.inhost [--cgroup-fd N] [--hostname NAME]
        [--mount FSTYPE OPTIONS TARGET]... -- ARGV...

--cgroup-fd     an fd of the host cgroup's cgroup.procs, opened by the parent in the root mount namespace
                (inside, `ip netns exec` has remounted /sys and the path is gone): this process writes its
                pid there, so it and everything it starts can be killed as one (cgroup.kill).
--mount         mount FSTYPE with OPTIONS on TARGET (mkdir -p first), in order: dockerd needs the cgroup
                hierarchies that `ip netns exec` hid.
--hostname      set the UTS hostname (only in a new UTS namespace: `unshare --uts`).

No shell: every argument goes to execvp as given.
"""

import argparse
import os
import socket
import subprocess
import sys


def main(argv: list[str]) -> None:
    if "--" not in argv:
        sys.exit("inhost: missing -- before the command")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="inhost")
    parser.add_argument("--cgroup-fd", type=int)
    parser.add_argument("--hostname")
    parser.add_argument("--mount", nargs=3, action="append", default=[], metavar=("FSTYPE", "OPTIONS", "TARGET"))
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if args.cgroup_fd is not None:
        os.write(args.cgroup_fd, str(os.getpid()).encode())
        os.close(args.cgroup_fd)
    for fstype, options, target in args.mount:
        os.makedirs(target, exist_ok=True)
        subprocess.run(["mount", "-t", fstype, "-o", options, fstype, target], check=True)
    if args.hostname:
        socket.sethostname(args.hostname)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
