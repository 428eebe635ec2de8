"""localvm's key-value table goes: the inventory snapshot and VM configs move to Django's cache (a table of
this database, made here), the GitHub token to a 0600 file (localvm.github.token_path)."""

import os
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


def move_github_token(apps, schema_editor):
    Entry = apps.get_model("localvm", "Entry")
    row = Entry.objects.using(schema_editor.connection.alias).filter(pk="github_token").first()
    if row is None or not row.value:
        return
    path = Path(settings.DATA_DIR) / "localvm" / "github_token"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(str(row.value) + "\n")


class Migration(migrations.Migration):

    dependencies = [
        ("localvm", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create_cache_table, migrations.RunPython.noop),
        migrations.RunPython(move_github_token, migrations.RunPython.noop),
        migrations.DeleteModel(name="Entry"),
    ]
