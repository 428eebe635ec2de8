"""Jobs used only by the foundation's tests (loaded through TTSTACK_EXTRA_JOB_MODULES)."""

import time

from ttproject.tasks.registry import job
from ttproject.tasks.runner import TaskFailed


@job("test.steps")
def steps(ctx):
    count = int(ctx.params.get("count", 3))
    for index in range(count):
        time.sleep(float(ctx.params.get("delay", 0.4)))
        ctx.log(f"step {index + 1} of {count}")
    return {"steps": count}


@job("test.fail")
def fail(ctx):
    ctx.log("about to fail")
    raise TaskFailed("it broke", stderr="details on stderr\n")
