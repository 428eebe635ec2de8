"""Django settings of every ttstack role (DJANGO_SETTINGS_MODULE=ttproject.settings).

TTSTACK_ROLE picks the role (controller, agent, localvm); each role is its own process with its own URLconf
and database. All apps are installed in every role so one migration history serves them all; only the
URLconf differs.

- variables.py declares every environment variable: its setting, type, default and meaning (docs/settings.md
  is generated from it);
- values.py reads them, once, into typed values, which become settings of the same names here;
- framework.py derives Django's own settings (databases, channels, django-q2, REST framework...) from them.

Code reads settings through `django.conf.settings` (or an app's `conf` module), never `os.environ`, so tests
can change them with `override_settings`.
"""

from .values import VALUES

globals().update(VALUES)

from .framework import *  # noqa: E402,F403
