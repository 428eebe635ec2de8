"""Django's own settings, derived from the typed values (ttproject/settings/values.py)."""

import os
from pathlib import Path

import environ

from .values import VALUES as env  # lower case: not itself a setting

BASE_DIR = Path(__file__).resolve().parent.parent.parent
ROLE = env["ROLE"]
DATA_DIR = env["DATA_DIR"]
DATA_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
REDIS_URL = env["REDIS_URL"]

# localvm binds loopback only and refuses foreign Host headers (DNS rebinding).
if ROLE == "localvm":
    ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
    BIND_ADDR = "127.0.0.1"
    # The page's session (localvm.page_login): never sent by another site's page, never read by scripts,
    # and named apart from the controller's, which a browser keeps for the same host 127.0.0.1.
    SESSION_COOKIE_NAME = "ttstack_localvm_session"
    SESSION_COOKIE_SAMESITE = "Strict"

INSTALLED_APPS = [
    "daphne",  # must come first so runserver is daphne's
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_q",
    "ttproject.tasks",
    "fleet",
    "agent",
    "localvm",
]

MIDDLEWARE = [
    "ttproject.middleware.RequestIdMiddleware",
    "ttproject.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "ttproject.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

ROOT_URLCONF = f"ttproject.urls.{ROLE}"
ASGI_APPLICATION = "ttproject.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database: DATABASE_URL, else one SQLite file per role under the data dir -------------------
DATABASES = {
    "default": {
        **environ.Env.db_url_config(env["DATABASE_URL"] or f"sqlite:///{DATA_DIR / f'{ROLE}.sqlite3'}"),
        "CONN_MAX_AGE": env["DB_CONN_MAX_AGE"],
    }
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker is another process: WAL lets readers run beside a writer, IMMEDIATE takes the
    # write lock at BEGIN (no lock-upgrade deadlocks), and the timeout waits instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{ROLE}-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache: shared by a role's web and worker processes (localvm: inventory, VM configs, GitHub catalogue),
# so it is a table of the role's own database (made by localvm's migration 0002 and by the test runner).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "ttstack_cache",
                "OPTIONS": {"MAX_ENTRIES": 10000}},
    # django-q2 writes its cluster statistics twice a second: they stay in the process, off the database.
    "process": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}

# --- channels and django-q2: Redis when REDIS_URL is set, else in-process / ORM ---------------
if REDIS_URL:
    CHANNEL_LAYERS = {
        # socket_timeout None: channels-redis waits 5 s in a blocking pop on an idle WebSocket, and redis-py 8's
        # default 5 s read timeout would fire first and close every idle task WebSocket with 1011.
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                    "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]}}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# A task longer than `retry` would be handed out twice, so `timeout` stays below it; jobs are
# idempotent anyway (they claim their Task row with a conditional UPDATE).
# One hour (localvm: a pull may take 3600 s) covers the longest job: a create waits up to
# TTSTACK_AGENT_CREATE_TIMEOUT for its agents and as long again for a rollback.
Q_CLUSTER = {
    # Workers of one deployment share a queue name; TTSTACK_QUEUE_NAME separates deployments on one Redis.
    "name": env["QUEUE_NAME"],
    "workers": env["WORKERS"],
    "timeout": env["TASK_TIMEOUT"],
    "retry": env["TASK_TIMEOUT"] + 120,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.1,
    "save_limit": 200,
    "label": "Queued jobs",
    "cache": "process",
    "sync": env["TASKS_SYNC"],
}
if env["QUEUE"] == "redis" and REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["broker_class"] = "ttproject.tasks.wakeup.WakeableORM"  # the ORM broker, woken on enqueue

# --- REST framework ------------------------------------------------------------------------------
_AUTH_BY_ROLE = {
    "controller": [
        "ttproject.api.auth.ApiKeyAuthentication",
        "ttproject.api.auth.OwnerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "agent": ["ttproject.api.auth.ApiKeyAuthentication"],
    "localvm": ["localvm.auth.LocalTokenAuthentication"],
}
# Who may open a task WebSocket (`?token=`): a function of the ASGI scope, per role.
WEBSOCKET_AUTHENTICATION = {
    "controller": "ttproject.api.auth.owner_ws_principal",
    "agent": "ttproject.api.auth.api_key_ws_principal",
    "localvm": "localvm.auth.ws_principal",
}[ROLE]
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": _AUTH_BY_ROLE[ROLE],
    "DEFAULT_PERMISSION_CLASSES": [
        "localvm.auth.HasLocalToken" if ROLE == "localvm" else "ttproject.api.auth.ApiKeyRequired"
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["ttproject.api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "ttproject.api.schema.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "ttproject.api.exceptions.json_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": f"ttstack {ROLE} API",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Pages load no CDN assets: Swagger UI comes from the sidecar package's static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- static files, served by whitenoise straight from the finders (no collectstatic needed) ----
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"  # whitenoise serves from the finders; the directory only has to exist
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = env["DEBUG"]

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/my/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env["LOG_LEVEL"]},
    # One line per agent call every heartbeat would drown everything else.
    "loggers": {"django.channels.server": {"level": "WARNING"}, "daphne": {"level": "WARNING"},
                "httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

