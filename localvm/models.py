"""localvm keeps no tables of its own: tasks are ttproject.tasks' Task, the inventory snapshot and VM configs
live in Django's cache (localvm.inventory), the GitHub token in a 0600 file (localvm.github)."""
