"""`ttstack manage localvm page_url`: print a new one-time sign-in URL of the localvm page."""

import os

from django.core.management.base import BaseCommand

from localvm.page_login import login_url


class Command(BaseCommand):
    help = "Print a new one-time URL that signs a browser in to the localvm page (docs/security.md)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("TTSTACK_PORT", "8000")))

    def handle(self, *args, port, **options):
        self.stdout.write(login_url(port))
