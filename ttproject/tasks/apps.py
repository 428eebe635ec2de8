from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "ttproject.tasks"
    label = "tasks"
    verbose_name = "Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Job functions register themselves on import; the worker must see all of them.
        from ttproject.api import schema  # noqa: F401  (registers the auth schemes)

        from . import registry

        registry.autodiscover()
