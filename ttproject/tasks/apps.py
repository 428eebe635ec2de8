from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "ttproject.tasks"
    label = "tasks"
    verbose_name = "Tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Job functions register themselves on import; the worker must see all of them.
        from django_q.signals import post_spawn, pre_execute

        from ttproject.api import schema  # noqa: F401  (registers the auth schemes)

        from . import registry, workers

        registry.autodiscover()
        # Each django-q worker process keeps its heartbeat row fresh from its start (Pulp's Worker).
        post_spawn.connect(workers.keep_alive, dispatch_uid="ttstack-worker-heartbeat-spawn")
        pre_execute.connect(workers.keep_alive, dispatch_uid="ttstack-worker-heartbeat-execute")
