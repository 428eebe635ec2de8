from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the fleet controller's periodic loop: heartbeat, reconciliation, expiry, retried deletes."

    def handle(self, *args, **options):
        from fleet.loop import run_forever

        run_forever()
