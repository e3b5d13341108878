"""ImageMedix settings, read from the environment (django-environ).

Two modes, one code path:

* **Embedded default** (no environment variables): SQLite in ``var/``, Celery tasks run
  inline, an in-memory channel layer, files in ``var/media`` (always encrypted by the app).
  This is what ``make run`` uses on a laptop.
* **Production / CI**: ``DATABASE_URL`` (PostgreSQL), ``REDIS_URL`` (Celery broker and
  channels-redis), ``STORAGE_BACKEND=s3`` (django-storages) and real secrets.

Every variable is documented in README.md ("Configuration").
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from celery.schedules import crontab
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("IMAGEMEDIX_VAR_DIR", default=str(BASE_DIR / "var")))
# var/ holds the embedded database, the encrypted media, the dev secrets and keys: owner only,
# also when it already existed with looser permissions.
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
VAR_DIR.chmod(0o700)


def _private_file(path: Path) -> None:
    """Create ``path`` (if missing) readable and writable by the owner only, or tighten it."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    path.chmod(0o600)


env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=True)


def _dev_secret(name: str, nbytes: int) -> str:
    """A random secret persisted under var/ so a laptop install keeps working across restarts.

    Only used when DEBUG is on; production must provide real secrets via the environment.
    """
    path = VAR_DIR / name
    if not path.exists():
        _private_file(path)
        path.write_text(base64.b64encode(secrets.token_bytes(nbytes)).decode())
    return path.read_text().strip()


if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=None) or _dev_secret("dev-secret-key", 48)
else:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    # django.contrib.admin with our site (second factor required, our login page).
    "apps.accounts.admin_apps.ImageMedixAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",  # API tokens: hashed, expiring (model accounts.ApiToken)
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally (no CDN)
    "csp",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",  # the authenticator app (TOTP)
    "django_otp.plugins.otp_static",  # recovery codes
    "channels",
    "apps.accounts",
    "apps.studies",
    "apps.diagnosis",
    "apps.reports",
    "apps.chat",
    "apps.integration",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Content-Security-Policy (django-csp, plus this site's WebSocket origin) and Permissions-Policy.
    "imagemedix.headers.ContentSecurityPolicyMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Lets audit events written outside views (a password change in User.save) see the request.
    "apps.accounts.audit.AuditRequestMiddleware",
    # request.user.is_verified(): a second factor was accepted in this session (django-otp).
    "django_otp.middleware.OTPMiddleware",
    # Whoever must use a second factor reaches only the sign-in pages until they have.
    "apps.accounts.second_factor.SecondFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Resolves /h/<slug>/ to request.hospital and activates the tenant scope.
    "apps.accounts.middleware.TenantMiddleware",
    # Must be last (django-axes requirement).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "imagemedix.urls"
WSGI_APPLICATION = "imagemedix.wsgi.application"
ASGI_APPLICATION = "imagemedix.asgi.application"

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
                "apps.accounts.context_processors.tenant",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
# An empty DATABASE_URL (a common leftover in .env files and compose files) means "not set".
DATABASES = {"default": env.db_url_config(env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# One connection per request by default. Under ASGI (daphne) each request's sync code runs in a
# thread of its own, so a persistent connection is never reused: it stays open until its thread is
# collected, and 50 users exhausted PostgreSQL's 100 connections in the load test ("too many
# clients", Django ticket #33497). Pool in front of PostgreSQL (PgBouncer) instead. A Celery worker
# may set DATABASE_CONN_MAX_AGE: its one task thread does reuse it. The health check replaces a
# connection the server or a proxy closed.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=0))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Embedded mode. IMMEDIATE takes the write lock when a transaction begins, so two requests
    # that both read then write (sign and amend at once) queue for up to SQLITE_BUSY_TIMEOUT
    # seconds instead of one failing with "database is locked" (SQLite cannot wait when a DEFERRED
    # reader tries to become a writer). WAL lets pages read while someone writes.
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "transaction_mode": "IMMEDIATE",
        "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=20),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }
    if DATABASES["default"]["NAME"] != ":memory:":
        # SQLite creates its -wal and -shm files with the database file's permissions: owner only.
        _private_file(Path(DATABASES["default"]["NAME"]))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ---------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # lockout check first
    "django.contrib.auth.backends.ModelBackend",
]
# Argon2id with the OWASP parameters (19 MiB, t=2, p=1), at most PASSWORD_HASH_CONCURRENCY hashes at
# once per process (imagemedix/hashers.py). Older argon2 hashes verify and are upgraded on login.
PASSWORD_HASHERS = [
    "imagemedix.hashers.BoundedArgon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
PASSWORD_HASH_CONCURRENCY = env.int("PASSWORD_HASH_CONCURRENCY", default=2)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:home"
LOGOUT_REDIRECT_URL = "accounts:login"

# Second factor (django-otp): who must use one is decided in apps/accounts/second_factor.py.
OTP_TOTP_ISSUER = env.str("TOTP_ISSUER", default="ImageMedix")  # the account's name in the authenticator app
# Signing or amending a report needs the password (and the code) entered within this many minutes.
REAUTH_MAX_AGE_MINUTES = env.int("REAUTH_MAX_AGE_MINUTES", default=5)
# Chat: a user may send at most this many messages per window of this many seconds.
CHAT_RATE_LIMIT_MESSAGES = env.int("CHAT_RATE_LIMIT_MESSAGES", default=10)
CHAT_RATE_LIMIT_SECONDS = env.int("CHAT_RATE_LIMIT_SECONDS", default=30)

# django-axes (apps/accounts/lockout.py): 5 failures on one account from one address pause that pair;
# 20 on one account from anywhere pause the account. Cleared by the cool-off, a password reset, a
# hospital admin (Members page) or a platform admin.
AXES_HANDLER = "apps.accounts.lockout.LockoutHandler"
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_ACCOUNT_FAILURE_LIMIT = env.int("AXES_ACCOUNT_FAILURE_LIMIT", default=20)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "username"]
AXES_USERNAME_CALLABLE = "apps.accounts.lockout.username_from"
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_FORM_FIELD = "username"
AXES_LOCKOUT_CALLABLE = "apps.accounts.lockout.lockout_response"  # 429, accounts/locked.html
AXES_VERBOSE = False
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)

# A hospital admin's invitation (e-mailed link) is valid for this many days.
INVITATION_TTL_DAYS = env.int("INVITATION_TTL_DAYS", default=7)

# Rate limits ("<count>/<second|minute|hour|day>", apps/accounts/ratelimit.py), counted in the cache.
PASSWORD_RESET_RATE = env.str("PASSWORD_RESET_RATE", default="5/hour")  # per client address and per e-mail
UPLOAD_RATE = env.str("UPLOAD_RATE", default="120/hour")  # image uploads per user, page and API together

# --- Sessions & security ------------------------------------------------------------------
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False  # the upload page's JS reads it for XHR posts
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy: only this site's own files run or style pages. No inline scripts or
# event handlers anywhere (templates load static/js/*.js); no <style> elements. Inline style
# *attributes* stay allowed (style-src-attr) for the few computed sizes the templates write
# (probability bar widths): they carry escaped numbers, cannot hold
# selectors (so no CSS-based data exfiltration) and load nothing (img-src still applies).
# connect-src also names the request's own ws(s):// origin (imagemedix/headers.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-elem": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "manifest-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    },
}
# Permissions-Policy (django-permissions-policy): no page of the portal uses these features, so no
# page (nor anything injected into one) may ask for them. Fullscreen stays available to the
# portal itself, for image viewing.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "ambient-light-sensor",
        "autoplay",
        "bluetooth",
        "browsing-topics",
        "camera",
        "display-capture",
        "encrypted-media",
        "geolocation",
        "gyroscope",
        "hid",
        "idle-detection",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "screen-wake-lock",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
} | {"fullscreen": ["self"]}

# --- I18N ---------------------------------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static & media -----------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# In debug (make run, the browser tests' daphne) WhiteNoise serves static files straight from the
# source folders, so daphne alone serves a working page; production uses collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
# Media is never served directly: every file is encrypted and goes through an
# access-checked, audited download view. MEDIA_URL is therefore not routed.
MEDIA_URL = "/media-not-served/"

STORAGE_BACKEND = env.str("STORAGE_BACKEND", default="local")
if STORAGE_BACKEND == "s3":
    _file_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.str("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default=None),
            "region_name": env.str("AWS_S3_REGION_NAME", default=None),
            "access_key": env.str("AWS_ACCESS_KEY_ID", default=None),
            "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default=None),
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
            # Server-side encryption on top of the app's own AES-256-GCM layer.
            "object_parameters": {"ServerSideEncryption": env.str("AWS_S3_SSE", default="AES256")},
        },
    }
elif STORAGE_BACKEND == "local":
    _file_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "file_permissions_mode": 0o600},
    }
else:
    raise ImproperlyConfigured(f"STORAGE_BACKEND must be 'local' or 's3', not {STORAGE_BACKEND!r}")

STORAGES = {
    "default": _file_storage,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Encryption at rest (AES-256-GCM, see apps/studies/crypto.py) --------------------------
# FILE_ENCRYPTION_KEYS="k2:<base64 32 bytes>,k1:<base64 32 bytes>": the first key encrypts new
# files; every listed key can still decrypt, so keys rotate without re-encrypting at once.
_keys_spec = env.str("FILE_ENCRYPTION_KEYS", default="")
if not _keys_spec:
    if not DEBUG:
        raise ImproperlyConfigured("FILE_ENCRYPTION_KEYS is required when DJANGO_DEBUG is off.")
    _keys_spec = "dev1:" + _dev_secret("dev-file-key", 32)
FILE_ENCRYPTION_KEYS: dict[str, bytes] = {}
FILE_ENCRYPTION_ACTIVE_KEY_ID = ""
for _i, _item in enumerate(part.strip() for part in _keys_spec.split(",") if part.strip()):
    _kid, _, _b64 = _item.partition(":")
    _key = base64.b64decode(_b64)
    if len(_key) != 32 or not _kid:
        raise ImproperlyConfigured("Each FILE_ENCRYPTION_KEYS entry must be '<id>:<base64 of 32 bytes>'.")
    FILE_ENCRYPTION_KEYS[_kid] = _key
    if _i == 0:
        FILE_ENCRYPTION_ACTIVE_KEY_ID = _kid

# --- Uploads ------------------------------------------------------------------------------
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=50 * 1024 * 1024)
UPLOAD_MAX_PIXELS = env.int("UPLOAD_MAX_PIXELS", default=40_000_000)  # decompression-bomb guard
# Largest STOW-RS request (all its instances together); each instance is also held to UPLOAD_MAX_BYTES.
DICOMWEB_MAX_REQUEST_BYTES = env.int("DICOMWEB_MAX_REQUEST_BYTES", default=4 * UPLOAD_MAX_BYTES)
# Signed reports go to each hospital's FHIR server (R4) when one is configured here, as JSON:
# {"<hospital slug>": {"url": "https://ehr.example.org/fhir", "authorization": "Bearer …"}}.
FHIR_ENDPOINTS = env.json("FHIR_ENDPOINTS", default={})
FHIR_EXPORT_TIMEOUT = env.float("FHIR_EXPORT_TIMEOUT", default=20.0)
FHIR_EXPORT_MAX_RETRIES = env.int("FHIR_EXPORT_MAX_RETRIES", default=8)
FHIR_EXPORT_RETRY_SECONDS = env.int("FHIR_EXPORT_RETRY_SECONDS", default=30)  # doubles with each retry
# Width × height × channels × bytes per sample (× frames), read from the header before decoding.
# The default lets a 16-bit greyscale image at the pixel limit through and refuses, say, a 308 KB
# PNG that claims 6300×6300 RGBA at 16 bits (303 MB decoded).
UPLOAD_MAX_DECODED_BYTES = env.int("UPLOAD_MAX_DECODED_BYTES", default=2 * UPLOAD_MAX_PIXELS)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Uploaded files stay in memory, up to the size cap, and are never spooled in plaintext to a
# temporary file (imagemedix/uploads.py): nothing of an image touches the disk before it is
# validated and stored encrypted. A bigger file keeps only its size, and is refused for it.
FILE_UPLOAD_HANDLERS = ["imagemedix.uploads.CappedMemoryUploadHandler"]
# Under ASGI, Django buffers each request body in a SpooledTemporaryFile of this size: an upload
# up to the cap (plus the form around it) stays in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = UPLOAD_MAX_BYTES + 1024 * 1024
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
# What the web server process still writes to temporary files (daphne's Twisted buffers request
# bodies of 100 KB and more in an unnamed temporary file before the application sees them) goes
# here, owner-only inside var/, instead of the shared system temporary directory (imagemedix/asgi.py).
PRIVATE_TEMP_DIR = Path(env.str("IMAGEMEDIX_TEMP_DIR", default=str(VAR_DIR / "tmp")))
PRIVATE_TEMP_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
PRIVATE_TEMP_DIR.chmod(0o700)

# --- Redis, Celery, Channels --------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"  # a host, or kombu warns on every send
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Workers consume this queue and tasks are sent to it; deployments (or test runs) sharing one Redis
# keep apart by using different names.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="default")
# Time limits of one AI read (seconds); the hard limit is also every other task's default, so that
# no task outlives the broker's visibility timeout below.
DIAGNOSIS_SOFT_TIME_LIMIT = env.int("DIAGNOSIS_SOFT_TIME_LIMIT", default=120)
DIAGNOSIS_TIME_LIMIT = env.int("DIAGNOSIS_TIME_LIMIT", default=180)
CELERY_TASK_TIME_LIMIT = DIAGNOSIS_TIME_LIMIT
# Redis redelivers a message a worker took but did not acknowledge (acks_late: the task did not end,
# e.g. the worker was killed) once this many seconds have passed. It must exceed the longest a task
# may run (the hard time limit) or a running task is delivered a second time, and the longest retry
# countdown (diagnose_study: 120 s); beyond that, a longer timeout only delays recovery. Hence the
# hard limit plus one minute (240 s by default).
REDIS_VISIBILITY_TIMEOUT = DIAGNOSIS_TIME_LIMIT + 60
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT}
# A study in "processing" is leased to the worker reading it for this many seconds; the worker renews
# the lease every third of it while it works. A lease that runs out means the worker died: the
# watchdog (apps/diagnosis/watchdog.py) sends the read again.
DIAGNOSIS_LEASE_SECONDS = env.int("DIAGNOSIS_LEASE_SECONDS", default=60)
# How often the watchdog runs (beat), re-sending expired leases and queued studies whose message is
# in no queue (a broker that was down at upload, or lost its data).
DIAGNOSIS_WATCHDOG_SECONDS = env.int("DIAGNOSIS_WATCHDOG_SECONDS", default=30)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
# Periodic tasks, sent by one `celery -A imagemedix beat` process (README, Deployment).
CELERY_BEAT_SCHEDULE = {
    # The learning loop (docs/LEARNING_LOOP.md): per-version figures from the doctors' feedback.
    "diagnosis-summarize-performance": {
        "task": "diagnosis.summarize_performance",
        "schedule": crontab(minute=7),
    },
    # ... and drift signals with their alerts, over the seven days before each run (UTC).
    "diagnosis-check-drift": {
        "task": "diagnosis.check_drift",
        "schedule": crontab(hour=2, minute=30),
    },
    # Nothing waits forever: re-send reads whose worker died or whose message was lost. A run that
    # waited past the next one is dropped (expires) rather than piling up behind a backlog.
    "diagnosis-resend-stalled-reads": {
        "task": "diagnosis.resend_stalled_reads",
        "schedule": DIAGNOSIS_WATCHDOG_SECONDS,
        "options": {"expires": DIAGNOSIS_WATCHDOG_SECONDS},
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# redis-py's default 5 s socket timeout races channels-redis's 5 s blocking pop (BZPOPMIN): an idle
# WebSocket's receive loop then dies with "Timeout reading from redis" and daphne closes it (1011).
# Reads may wait well past the pop; TCP keepalive and a health check find a connection that died.
CHANNELS_REDIS_CONNECTION = {
    "socket_timeout": 30,  # > channels_redis RedisChannelLayer.brpop_timeout (5 s)
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "health_check_interval": 30,
}

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, **CHANNELS_REDIS_CONNECTION}],
                "prefix": env.str("CHANNELS_PREFIX", default="imagemedix"),
            },
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Email --------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="ImageMedix <no-reply@imagemedix.local>")
# The portal's public address (scheme and host, e.g. https://imaging.example.org): links in e-mails
# are built on it, also those sent outside a request (drift alerts from a worker, invitations from a
# command). Empty: a link is completed from the request when there is one, and stays relative
# otherwise (`check --deploy` warns about that when DJANGO_DEBUG is off; imagemedix/links.py).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="").strip().rstrip("/")
if PUBLIC_BASE_URL:
    _public = urlsplit(PUBLIC_BASE_URL)
    try:
        _public_port_ok = _public.port is not None or ":" not in _public.netloc.rsplit("]", 1)[-1]
    except ValueError:
        _public_port_ok = False
    if (
        _public.scheme not in ("http", "https")
        or not _public.hostname
        or not _public_port_ok
        or "@" in _public.netloc
        or _public[2:] != ("", "", "")
    ):
        raise ImproperlyConfigured(
            f"PUBLIC_BASE_URL must be the portal's scheme and host, such as https://imaging.example.org "
            f"(no path, query or fragment), not {PUBLIC_BASE_URL!r}."
        )

# --- REST framework -----------------------------------------------------------------------
# API tokens (django-rest-knox): stored as SHA-512 digests, each expires API_TOKEN_TTL_HOURS after it
# was created, optionally bound to one hospital (our model accounts.ApiToken replaces knox's own).
API_TOKEN_TTL_HOURS = env.float("API_TOKEN_TTL_HOURS", default=8)
if API_TOKEN_TTL_HOURS <= 0:
    raise ImproperlyConfigured("API_TOKEN_TTL_HOURS must be a positive number of hours.")
KNOX_TOKEN_MODEL = "accounts.ApiToken"  # noqa: S105 - a model name, not a secret
REST_KNOX = {"TOKEN_TTL": timedelta(hours=API_TOKEN_TTL_HOURS), "AUTH_HEADER_PREFIX": "Token", "AUTO_REFRESH": False}
# knox's migrations would create the table of its own (swapped-out) token model: skip them.
MIGRATION_MODULES = {"knox": None}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.accounts.api.exception_handler",
    # Writes (POST, PUT, PATCH, DELETE) per user; uploads are also counted by UPLOAD_RATE.
    "DEFAULT_THROTTLE_CLASSES": ["apps.accounts.ratelimit.WriteRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_write": env.str("API_WRITE_RATE", default="120/hour")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ImageMedix API",
    "DESCRIPTION": (
        "Patients, studies and AI second reads, scoped to one hospital per URL. Authenticate with an API "
        "token (`Authorization: Token <token>`) created on the API tokens page (/accounts/tokens/) or with "
        "`manage.py create_api_token`. Tokens expire (8 hours by default), may be bound to one hospital "
        "(other hospitals answer 403) and are revoked with POST /api/v1/auth/logout/ or /logoutall/."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Swagger UI would fetch a badge from validator.swagger.io (blocked by the CSP, and a leak).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# --- Diagnosis ----------------------------------------------------------------------------
MODEL_WEIGHTS_DIR = Path(env.str("MODEL_WEIGHTS_DIR", default=str(BASE_DIR / "apps" / "diagnosis" / "weights")))
TORCH_NUM_THREADS = env.int("TORCH_NUM_THREADS", default=2)
# How the models run: auto (ONNX Runtime when installed, else TorchScript), onnxruntime, torchscript
# or eager. Exported ONNX models are kept in MODEL_CACHE_DIR so workers start without re-exporting.
INFERENCE_BACKEND = env.str("INFERENCE_BACKEND", default="auto")
if INFERENCE_BACKEND not in {"auto", "onnxruntime", "torchscript", "eager"}:
    raise ImproperlyConfigured(
        f"INFERENCE_BACKEND must be auto, onnxruntime, torchscript or eager, not {INFERENCE_BACKEND!r}."
    )
MODEL_CACHE_DIR = Path(env.str("MODEL_CACHE_DIR", default=str(VAR_DIR / "model-cache")))

# --- Logging ------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# A stable fingerprint of the active key id (shown in the admin, never the key itself).
FILE_ENCRYPTION_KEY_FINGERPRINT = hashlib.sha256(FILE_ENCRYPTION_KEYS[FILE_ENCRYPTION_ACTIVE_KEY_ID]).hexdigest()[:12]
