"""Django settings for Perch Agile.

Everything that differs between a laptop and production comes from the environment:

- ``DJANGO_DEBUG=1`` for development (off by default). Production needs
  ``DJANGO_SECRET_KEY`` and ``DJANGO_ALLOWED_HOSTS``.
- ``DATABASE_URL`` / ``REDIS_URL``: when unset, the embedded PostgreSQL + pgvector and
  Redis that ``perch_agile.embedded`` starts under ``var/``.
- ``PERCH_AGILE_MODEL``: the embedding model (``birdnet_v2_4`` offline default,
  ``perch_v2`` in production); ``PERCH_AGILE_MODEL_PATH``: a local folder or file
  holding its weights, for sites that cannot download them.
- ``PERCH_AGILE_AUDIO_ROOTS``: ``:``-separated folders that admins may register as
  server-side deployments.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from perch_agile import embedded

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = embedded.VAR_DIR


def _env_flag(name: str, default: bool = False) -> bool:
    return os.environ.get(name, "1" if default else "0").lower() in ("1", "true", "yes", "on")


def _env_list(name: str, default: str, separator: str = ",") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(separator) if item.strip()]


DEBUG = _env_flag("DJANGO_DEBUG")


def _secret_key() -> str:
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    if not DEBUG:
        raise ImproperlyConfigured("Set DJANGO_SECRET_KEY (or DJANGO_DEBUG=1 for development).")
    # Development: one random key per checkout, kept so sessions survive restarts.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by the app: /api/docs/ works offline
    "annotations",
    "frontend",
    "workers",
]

MIDDLEWARE = [
    "perch_agile.health.health_check",
    "django.middleware.security.SecurityMiddleware",
    "perch_agile.headers.content_security_policy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "perch_agile.replicas.remember_writes",
    "perch_agile.login_limits.LoginLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "perch_agile.urls"
WSGI_APPLICATION = "perch_agile.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "frontend.context_processors.embedding_model",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(os.environ.get("DATABASE_URL") or embedded.database_url(), conn_max_age=60)
}
# A connection killed under a long-lived worker (database restart, failover) is noticed
# and replaced at the start of the next request instead of failing it.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Hot standbys of the primary (perch_agile/replicas.py): searches and review queues read
# from them. Each is an alias standby_N; its tests mirror the primary's database.
for number, url in enumerate(_env_list("PERCH_AGILE_REPLICA_URLS", "")):
    DATABASES[f"standby_{number}"] = dj_database_url.parse(url, conn_max_age=60) | {
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"MIRROR": "default"},
    }
for database in DATABASES.values():
    # A unix-socket URL (``?host=/folder``) parses into OPTIONS; Django's HOST takes the folder.
    if socket_dir := database.get("OPTIONS", {}).pop("host", None):
        database["HOST"] = socket_dir
DATABASE_ROUTERS = ["perch_agile.replicas.ReadRouter"]
# A standby further behind the primary than this is skipped (its reads go to the primary).
PERCH_AGILE_REPLICA_MAX_LAG_S = float(os.environ.get("PERCH_AGILE_REPLICA_MAX_LAG_S", 5))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["perch_agile.login_limits.LimitedModelBackend"]
# How many reverse proxies in front of gunicorn set X-Forwarded-For and -Proto (docker
# compose: nginx, 1). With 0, those headers come from the client: REMOTE_ADDR is the
# client, and neither the forwarded address nor the scheme is believed.
PERCH_AGILE_TRUSTED_PROXIES = int(os.environ.get("PERCH_AGILE_TRUSTED_PROXIES", 0))
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "frontend:projects"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Uploaded audio lives here; it is never served directly (audio goes through
# permission-checked views).
MEDIA_ROOT = Path(os.environ.get("PERCH_AGILE_MEDIA_ROOT", VAR_DIR / "media"))
# Uploads stream to temporary files beyond 2.5 MB instead of sitting in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
PERCH_AGILE_MAX_UPLOAD_BYTES = int(os.environ.get("PERCH_AGILE_MAX_UPLOAD_BYTES", 8 * 1024**3))
PERCH_AGILE_MAX_REQUEST_BYTES = int(os.environ.get("PERCH_AGILE_MAX_REQUEST_BYTES", 32 * 1024**3))
# Example clip files each user may keep (annotations.clips).
PERCH_AGILE_CLIP_QUOTA_BYTES = int(os.environ.get("PERCH_AGILE_CLIP_QUOTA_BYTES", 500 * 1024**2))
PERCH_AGILE_AUDIO_ROOTS = [
    Path(p).resolve() for p in _env_list("PERCH_AGILE_AUDIO_ROOTS", str(VAR_DIR / "audio"), separator=":")
]

# The embedding model every new ingest uses (see workers/embedding_models.py).
PERCH_AGILE_MODEL = os.environ.get("PERCH_AGILE_MODEL", "birdnet_v2_4")
PERCH_AGILE_MODEL_PATH = os.environ.get("PERCH_AGILE_MODEL_PATH", "")
PERCH_AGILE_EMBED_BATCH = int(os.environ.get("PERCH_AGILE_EMBED_BATCH", 64))
# maintenance_work_mem of a search index build (annotations.search_index): the whole HNSW
# graph in memory, or the build spills and takes ten times as long.
PERCH_AGILE_INDEX_BUILD_MEMORY = os.environ.get(
    "PERCH_AGILE_INDEX_BUILD_MEMORY",
    embedded.database_tuning(embedded.machine_memory(), os.cpu_count() or 1)["maintenance_work_mem"],
)

REST_FRAMEWORK = {
    # No HTTP basic auth: it would let scripts guess passwords past the login throttle.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PARSER_CLASSES": [
        "annotations.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "NUM_PROXIES": PERCH_AGILE_TRUSTED_PROXIES,
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "EXCEPTION_HANDLER": "annotations.api.errors.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Perch Agile API",
    "DESCRIPTION": "Agile modeling for bioacoustics: ingest, query by example, label, train, run, export.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RecordingStatusEnum": "annotations.models.RecordingStatus",
        "TaskStatusEnum": "annotations.models.TaskStatus",
        "LabelValueEnum": "annotations.models.LabelValue",
    },
}

CELERY_BROKER_URL = os.environ.get("REDIS_URL") or embedded.redis_url()
# Redis also backs the cache (login throttling), shared by every web process.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CELERY_BROKER_URL.replace("redis+socket://", "unix://", 1),
        "KEY_PREFIX": "perch_agile",
    }
}
# Password guessing (perch_agile/login_limits.py): failures per address and user name,
# per address over all names, and the ceiling of the per-name delay.
LOGIN_FAILURE_LIMIT = int(os.environ.get("PERCH_AGILE_LOGIN_FAILURE_LIMIT", 10))
LOGIN_ADDRESS_FAILURE_LIMIT = int(os.environ.get("PERCH_AGILE_LOGIN_ADDRESS_FAILURE_LIMIT", 50))
LOGIN_USER_DELAY_MAX_S = 60
LOGIN_FAILURE_WINDOW_S = 15 * 60
PASSWORD_RESET_ADDRESS_LIMIT = 5
PASSWORD_RESET_EMAIL_LIMIT = 3
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("PERCH_AGILE_QUEUE", "perch_agile")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Long recordings take long: a visibility timeout below the longest task would make
# Redis hand the same message to a second worker.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("PERCH_AGILE_LOG_LEVEL", "INFO")},
}

# Password reset mails: SMTP settings from the environment; printed to the log in development.
EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = os.environ.get("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("DJANGO_EMAIL_PORT", 25))
EMAIL_HOST_USER = os.environ.get("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_flag("DJANGO_EMAIL_USE_TLS")
EMAIL_TIMEOUT = 10  # an unreachable mail server must not hold a request (invitation links) for long
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "perch-agile@localhost")

if not DEBUG:
    # Production is reached over HTTPS: plain HTTP is redirected and the cookies travel
    # over HTTPS only. A site on a closed network without TLS says so with
    # DJANGO_SECURE_SSL_REDIRECT=0, which lets the cookies travel over HTTP too (else
    # nobody could log in); check --deploy then warns of both.
    SECURE_SSL_REDIRECT = _env_flag("DJANGO_SECURE_SSL_REDIRECT", True)
    if PERCH_AGILE_TRUSTED_PROXIES:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = SECURE_SSL_REDIRECT
    CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", 31_536_000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
