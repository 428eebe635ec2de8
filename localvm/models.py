"""What the localvm role keeps between requests and processes (web and worker share the database)."""

from django.db import models


class Entry(models.Model):
    """A small JSON value by key: the VM inventory snapshot, cached VM configs, the GitHub token."""

    key = models.CharField(primary_key=True, max_length=300)
    value = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "entries"

    def __str__(self):
        return self.key


def read(key: str, default=None):
    row = Entry.objects.filter(pk=key).values_list("value", "updated_at").first()
    return (row[0], row[1]) if row else (default, None)


def write(key: str, value) -> None:
    Entry.objects.update_or_create(pk=key, defaults={"value": value})


def forget(*keys: str) -> None:
    Entry.objects.filter(pk__in=keys).delete()
