#!/usr/bin/env python3
"""Django's command-line utility. The role comes from TTSTACK_ROLE (controller, agent, localvm)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ttproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
