from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "fleet"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_delete

        from . import (
            events,
            image_spread,  # noqa: F401  (registers the job fleet.image_spread)
        )
        from .models import Environment

        # The end of an environment's life: its rows dropped once every VM is confirmed gone.
        post_delete.connect(events.env_deleted, sender=Environment, dispatch_uid="fleet.events.env_deleted")
