from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "fleet"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import image_spread  # noqa: F401  (registers the job fleet.image_spread)
