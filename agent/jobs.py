"""Jobs of the agent. The agent runs no worker: they run in a thread of its web process
(ttproject.tasks.runner.submit_here), with the same task rows, progress and WebSocket as the other roles."""

from agent import image_import
from ttproject.tasks.registry import job


@job(image_import.ACTION)
def import_image(ctx) -> dict:
    return image_import.run(ctx)
