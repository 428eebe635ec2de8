from django.apps import AppConfig


class LocalvmConfig(AppConfig):
    name = "localvm"
    default_auto_field = "django.db.models.BigAutoField"
