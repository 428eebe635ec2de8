from django.apps import AppConfig


class LocalvmConfig(AppConfig):
    name = "localvm"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from .api import schema  # noqa: F401  (registers the X-Local-Token scheme with drf-spectacular)
