"""`ttstack manage controller add_owner NAME [--password-stdin | --password PW]`: create (or update) an owner.

Owners are plain Django users (not staff): they sign in at /accounts/login/ and see only their own
environments. Operators can also add them in the Django admin (/admin/auth/user/add/).
"""

import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create an owner account (or set its password) for the owners' pages."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", help="the password (prefer --password-stdin: argv is visible to ps)")
        parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        parser.add_argument("--email", default="")

    def handle(self, *args, username, password, password_stdin, email, **options):
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CommandError("give a password with --password-stdin or --password")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        if not created and user.is_staff:
            raise CommandError(f"{username} is an operator (staff) account; change it in the admin")
        user.set_password(password)
        if email:
            user.email = email
        user.save()
        self.stdout.write(f"owner {username} {'created' if created else 'updated'}")
