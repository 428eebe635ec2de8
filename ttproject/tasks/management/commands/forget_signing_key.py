from django.core.management.base import BaseCommand

from ttproject.tasks.models import SigningKey


class Command(BaseCommand):
    help = "Forget the recorded fingerprint of the secret key (after changing TTSTACK_SECRET_KEY on every process)."

    def handle(self, *args, **options):
        SigningKey.objects.all().delete()
        self.stdout.write("forgotten: the next process to start records its key")
