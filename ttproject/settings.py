"""Settings for every ttstack role, read from environment variables only.

TTSTACK_ROLE picks the role (controller, agent, localvm); each role is its own process with its own
URLconf and database. All apps are installed in every role so one migration history serves them all;
only the URLconf differs. Every variable is documented in README.md ("Settings").
"""

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
ROLES = ("controller", "agent", "localvm")
ROLE = os.environ.get("TTSTACK_ROLE", "controller")
if ROLE not in ROLES:
    raise RuntimeError(f"TTSTACK_ROLE must be one of {', '.join(ROLES)}, not {ROLE!r}")


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


# root (a host running VMs) keeps its data under /var/lib: qemu runs as libvirt-qemu under
# qemu:///system and must be able to walk into the directories of the VMs' disks (/root is 0700).
DEFAULT_DATA_DIR = Path("/var/lib/ttstack") if os.geteuid() == 0 else Path.home() / ".ttstack"
DATA_DIR = Path(os.environ.get("TTSTACK_DATA_DIR", DEFAULT_DATA_DIR)).expanduser()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    if key := os.environ.get("TTSTACK_SECRET_KEY"):
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("TTSTACK_DEBUG")
API_KEY = os.environ.get("TTSTACK_API_KEY") or None

# localvm binds loopback only and refuses foreign Host headers (DNS rebinding).
if ROLE == "localvm":
    ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
else:
    ALLOWED_HOSTS = [h for h in os.environ.get("TTSTACK_ALLOWED_HOSTS", "*").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("TTSTACK_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

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
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / f'{ROLE}.sqlite3'}",
        conn_max_age=int(os.environ.get("TTSTACK_DB_CONN_MAX_AGE", "0")),
    )
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

# --- channels and django-q2: Redis when REDIS_URL is set, else in-process / ORM ---------------
REDIS_URL = os.environ.get("REDIS_URL") or None
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# A task longer than `retry` would be handed out twice, so `timeout` stays below it; jobs are
# idempotent anyway (they claim their Task row with a conditional UPDATE).
# One hour (localvm: a pull may take 3600 s) covers the longest job: a create waits up to
# TTSTACK_AGENT_CREATE_TIMEOUT for its agents and as long again for a rollback.
_Q_TIMEOUT = int(os.environ.get("TTSTACK_TASK_TIMEOUT", "3700" if ROLE == "localvm" else "3600"))
Q_CLUSTER = {
    # Workers of one deployment share a queue name; TTSTACK_QUEUE_NAME separates deployments on one Redis.
    "name": os.environ.get("TTSTACK_QUEUE_NAME", f"ttstack-{ROLE}"),
    "workers": int(os.environ.get("TTSTACK_WORKERS", "4")),
    "timeout": _Q_TIMEOUT,
    "retry": _Q_TIMEOUT + 120,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.1,
    "save_limit": 200,
    "label": "Queued jobs",
    "sync": env_bool("TTSTACK_TASKS_SYNC"),
}
# TTSTACK_QUEUE picks the job broker: "redis" (default when REDIS_URL is set) or "orm".
if os.environ.get("TTSTACK_QUEUE", "redis" if REDIS_URL else "orm") == "redis" and REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

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
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": _AUTH_BY_ROLE[ROLE],
    "DEFAULT_PERMISSION_CLASSES": [
        "localvm.auth.HasLocalToken" if ROLE == "localvm" else "ttproject.api.auth.ApiKeyRequired"
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
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
WHITENOISE_AUTOREFRESH = DEBUG

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
    "root": {"handlers": ["console"], "level": os.environ.get("TTSTACK_LOG_LEVEL", "INFO")},
    # One line per agent call every heartbeat would drown everything else.
    "loggers": {"django.channels.server": {"level": "WARNING"}, "daphne": {"level": "WARNING"},
                "httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# --- role services -------------------------------------------------------------------------------
BIND_ADDR = "127.0.0.1" if ROLE == "localvm" else os.environ.get("TTSTACK_BIND", "0.0.0.0")
# How often a WebSocket consumer re-reads its task row: the database is the truth and a
# channel-layer message only a hint, so a worker in another process without Redis is seen too.
TASK_POLL_INTERVAL = float(os.environ.get("TTSTACK_TASK_POLL", "0.25"))
