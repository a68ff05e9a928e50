"""One settings module for every deployment, configured by environment variables.

With no variable set the app runs on the embedded stack: SQLite (WAL) in the data directory,
Celery tasks executed eagerly in-process, an in-memory channel layer, DEBUG off. Setting
``DATABASE_URL`` and ``REDIS_URL`` switches to PostgreSQL, Celery workers on Redis and
channels-redis. Every variable is listed in the README's configuration table.
"""

from __future__ import annotations

import os
import secrets
import zoneinfo
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("CLINAIOPS_DATA_DIR") or BASE_DIR / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_from_data_dir(filename: str, generate) -> str:
    """Read a generated secret from the data directory, creating it (mode 0600) on first use."""
    path = DATA_DIR / filename
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate())
    return path.read_text().strip()


SECRET_KEY = os.environ.get("SECRET_KEY") or _secret_from_data_dir(
    "secret_key", lambda: secrets.token_urlsafe(64)
)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "oauth2_provider",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from our own static files
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "rules.apps.AutodiscoverRulesConfig",
    "channels",
    "audit",
    "accounts",
    "patients",
    "models_ml",
    "clinicians",
    "clinaiops",
    "clinaiops.cds_hooks",
]

MIDDLEWARE = [
    "clinaiops.middleware.TrustedProxyMiddleware",  # first: everything after sees the client
    "clinaiops.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from the app itself, compressed and cacheable, with DEBUG off too.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise: every page the app renders carries the policy, static files do not.
    "csp.middleware.CSPMiddleware",
    "clinaiops.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "clinaiops.middleware.AccessLogMiddleware",
    "clinaiops.middleware.DependencyUnavailableMiddleware",
]

ROOT_URLCONF = "clinaiops.urls"
ASGI_APPLICATION = "clinaiops.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "clinaiops" / "templates"],
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

# --- Database -------------------------------------------------------------------------------

DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'clinaiops.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers work while one writer commits; IMMEDIATE takes the write lock at BEGIN so
    # concurrent writers queue instead of failing with "database is locked" on upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
        ),
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # Tests use a file too: an in-memory shared-cache database ignores busy_timeout, so the
    # concurrency tests would not exercise the locking that production relies on.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test_clinaiops.sqlite3")}
else:
    # Under ASGI, persistent connections (CONN_MAX_AGE) are opened per request and leak
    # (Django ticket #33497); Django's psycopg pool hands a connection to each request instead.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The pool checks a connection before handing it out: one PostgreSQL dropped on a restart
    # is replaced, not given to a request or task. Our backend (clinaiops.postgresql) gives the
    # pool a check that also clears every dead sibling at once: Django's own waited a growing
    # backoff per dead connection and timed out on the first request after a restart.
    DATABASES["default"]["ENGINE"] = "clinaiops.postgresql"
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": int(os.environ.get("DB_POOL_MIN_SIZE", "2")),
        "max_size": int(os.environ.get("DB_POOL_MAX_SIZE", "20")),
        "timeout": 10,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker, channel layer, cache ---------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL") or None

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", REDIS_URL is None)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fix-up closes the database connections — in a prefork worker the whole psycopg
# pool — around every task, unless told to reuse them for this many tasks: practically forever.
# clinaiops.worker_connections hands them back to the pool after each task instead, and drops a
# broken one, as Django does after a request (docs/operations.md, "Database connections").
CELERY_DB_REUSE_MAX = 1_000_000_000
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker keeps reconnecting to a restarted broker for as long as it takes (never exits).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Held tasks of a worker that died come back after 5 minutes, not Celery's default hour; every
# countdown we use (the 5 s evaluation debounce) is far below it. Socket timeouts above the
# blocking reads, so a quiet connection is not mistaken for a dead one.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 300,
    "socket_timeout": 30,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "retry_on_timeout": True,
    "health_check_interval": 25,
}
# On a lost broker connection, late-acknowledged tasks in flight are cancelled and redelivered
# (they are idempotent) instead of finishing unacknowledgeable (Celery 6's default).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Two queues: ``safety`` (the alert outbox sweep and the worker heartbeat — small, never behind
# routine work) and the default ``celery`` (evaluations, sweeps, visits, models). Start a worker
# on each, or one on both: ``celery -A clinaiops worker -Q safety,celery``.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {
    "clinicians.tasks.sweep_due_safety_checks": {"queue": "safety"},
    "clinicians.tasks.worker_heartbeat": {"queue": "safety"},
    "clinicians.tasks.fire_due_escalations": {"queue": "safety"},
}
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "safety-outbox": {"task": "clinicians.tasks.sweep_due_safety_checks", "schedule": 30.0},
    "worker-heartbeat": {"task": "clinicians.tasks.worker_heartbeat", "schedule": 15.0},
    # The escalation ladders (clinicians.alerts): rungs due for unacknowledged urgent alerts.
    "alert-escalations": {"task": "clinicians.tasks.fire_due_escalations", "schedule": 30.0},
    "sweep-evaluations": {"task": "clinicians.tasks.sweep_evaluations", "schedule": 3600.0},
    "audit-seal-checkpoints": {"task": "audit.seal_checkpoints", "schedule": 300.0},
    "audit-verify-journal": {"task": "audit.verify_journal", "schedule": 24 * 3600.0},
    "model-monitor-daily": {
        "task": "clinicians.tasks.monitor_models",
        "schedule": 24 * 3600.0,
        "args": ["daily"],
    },
    "model-monitor-weekly": {
        "task": "clinicians.tasks.monitor_models",
        "schedule": 7 * 24 * 3600.0,
        "args": ["weekly"],
    },
    # Visit cadence (docs/patient-clinician-loop.md): propose or move each patient's next visit.
    "visit-cadence-daily": {"task": "clinicians.tasks.plan_visits", "schedule": 24 * 3600.0},
    # The patient's record copies (clinaiops.record_export): expired files deleted.
    "record-exports-purge": {"task": "clinaiops.purge_expired_record_exports", "schedule": 900.0},
}
# A monitoring alert queues the training of a new candidate (never its promotion); on data
# that hold real patients, private training only (models_ml.tasks.train_candidate).
MODEL_RETRAIN_ON_ALERT = env_bool("MODEL_RETRAIN_ON_ALERT", False)
# Each real patient's lifetime ε over every private training that touches them (RDP, at δ no
# larger than any of those runs'): a run that would take one past it is refused. 6.0 is the
# dataset budget the registry has always used; two default runs (ε 3.0) compose to 4.4, three
# to 5.5, and a fourth is refused.
PATIENT_PRIVACY_BUDGET_EPSILON = float(os.environ.get("PATIENT_PRIVACY_BUDGET_EPSILON", "6.0"))
# The held-out split's salt (models_ml.dataset.TrainingSet.split_by_patient). Empty: generated
# once in the data directory (held_out_split.salt; back it up with the database).
HELD_OUT_SPLIT_SALT = os.environ.get("HELD_OUT_SPLIT_SALT", "")
# Uploads of one patient arriving within this many seconds share one evaluation run.
EVALUATION_DEBOUNCE_SECONDS = int(os.environ.get("EVALUATION_DEBOUNCE_SECONDS", "5"))

if REDIS_URL:
    from clinaiops.redis_pool import redis_cache, redis_channel_layer

    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
    CACHES = {"default": redis_cache(REDIS_URL)}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Audit journal (see docs/audit.md) ----------------------------------------------------------

# Ed25519 key signing checkpoints and exports: PKCS#8 PEM or base64 of the 32-byte seed. Unset:
# generated into the data directory on first use.
AUDIT_SIGNING_KEY = os.environ.get("AUDIT_SIGNING_KEY") or None
AUDIT_RETIRED_PUBLIC_KEYS = env_list("AUDIT_RETIRED_PUBLIC_KEYS", [])
AUDIT_CHECKPOINT_EVERY = int(os.environ.get("AUDIT_CHECKPOINT_EVERY", "1024"))
# Hash chains new events are spread over on PostgreSQL (docs/audit.md, "Chains"); SQLite keeps one.
AUDIT_CHAINS = int(os.environ.get("AUDIT_CHAINS", "16"))
AUDIT_PATIENT_EXISTS = "patients.selectors.patient_exists"

# --- Identity, passwords, sessions ------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    # Axes first: it refuses a locked-out username/address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    # No object-permission backend: object rules are asked of the authorization controller
    # (core.authz), never through user.has_perm, which would skip its 404 and its journal.
    "django.contrib.auth.backends.ModelBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:home"

SESSION_COOKIE_AGE = int(os.environ.get("SESSION_COOKIE_AGE", str(8 * 3600)))
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Transport security: cookies are Secure and HSTS is sent unless DEBUG is on. The HTTPS redirect
# is usually the TLS proxy's job; set SECURE_SSL_REDIRECT=1 when Django faces clients itself.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
# How many reverse proxies in front of the app append to X-Forwarded-For. 0 (the default): the
# header is ignored, the client is the socket's peer. N: the N-th address from the right.
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
# X-Forwarded-Proto is believed only behind a trusted proxy: a client talking to the app directly
# must not be able to claim HTTPS (the Secure-cookie and redirect decisions rest on it).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXY_COUNT else None
# Health checks and the local demo are served over plain HTTP on the loopback interface.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SILENCED_SYSTEM_CHECKS = [
    # RFC 9700 items not taken, and why (docs/identity.md): the password grant is not enabled
    # for any client (the direct endpoint checks the password and TOTP itself, then issues
    # through the library); http redirect URIs are needed for native apps' loopback redirects
    # (RFC 8252 §7.3).
    "oauth2_provider.W002",
    "oauth2_provider.W008",
]

# django-axes: lock a username+address pair after repeated failures (OWASP ASVS 2.2.1).
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("AXES_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_LOCKOUT_CALLABLE = "clinaiops.api.errors.lockout_response"
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

OTP_TOTP_ISSUER = "ClinAIOps"

# --- API --------------------------------------------------------------------------------------

API_MAX_BODY_BYTES = int(os.environ.get("API_MAX_BODY_BYTES", str(8 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# A FHIR poll by _lastUpdated answers what changed up to this many seconds ago (its Bundle's
# meta.lastUpdated): a write still committing when the poll runs must not be behind the mark
# the next poll starts from (docs/fhir.md, "Incremental sync").
FHIR_SYNC_SETTLE_SECONDS = int(os.environ.get("FHIR_SYNC_SETTLE_SECONDS", "10"))
# The identifier system of the clinic EHR's medical record numbers (FHIR Patient identifier).
FHIR_MRN_SYSTEM = os.environ.get("FHIR_MRN_SYSTEM", "urn:clinaiops:mrn")

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.identity.authentication.BearerTokenAuthentication",
        "clinaiops.api.authentication.VerifiedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.JSONParser"],  # bounded depth: 400, not 500
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "clinaiops.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("THROTTLE_ANON", "60/minute"),
        "user": os.environ.get("THROTTLE_USER", "1200/minute"),
        "login": os.environ.get("THROTTLE_LOGIN", "20/minute"),
    },
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "UNAUTHENTICATED_USER": None,
    # Throttles key on REMOTE_ADDR, which TrustedProxyMiddleware has already taken from
    # X-Forwarded-For when (and only when) TRUSTED_PROXY_COUNT proxies are configured.
    "NUM_PROXIES": 0,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

# --- Identity: one OAuth 2.0 / OpenID Connect server (django-oauth-toolkit) --------------------
# Every API and FHIR token comes from it: the phone (code + PKCE), SMART apps, EHR back-ends
# (client credentials with a signed assertion) and the first-party direct endpoint
# (/api/v1/auth/token/, which staff reach only with their TOTP code). docs/identity.md.

ACCESS_TOKEN_MINUTES = int(
    os.environ.get("ACCESS_TOKEN_MINUTES") or os.environ.get("JWT_ACCESS_MINUTES") or "15"
)
REFRESH_TOKEN_DAYS = int(
    os.environ.get("REFRESH_TOKEN_DAYS") or os.environ.get("JWT_REFRESH_DAYS") or "7"
)
# The direct username/password(/otp) endpoint for first-party clients; off in production if every
# client uses the authorization code flow.
FIRST_PARTY_TOKEN_ENDPOINT = env_bool("FIRST_PARTY_TOKEN_ENDPOINT", True)
# The issuer URL (``iss`` of ID tokens, the discovery documents); derived from the request when
# unset, which is right behind a proxy that passes Host and X-Forwarded-Proto.
OIDC_ISSUER = os.environ.get("OIDC_ISSUER", "").rstrip("/")


def _generate_rsa_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


# The library's own models (named so that migrations referring to them resolve).
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"  # noqa: S105 - a model name
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"  # noqa: S105 - a model name
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"  # noqa: S105 - a model name
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
OAUTH2_PROVIDER_DEVICE_GRANT_MODEL = "oauth2_provider.DeviceGrant"

OAUTH2_PROVIDER: dict[str, Any] = {
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": os.environ.get("OIDC_RSA_PRIVATE_KEY")
    or _secret_from_data_dir("oidc_rsa_key.pem", _generate_rsa_key),
    "OAUTH2_VALIDATOR_CLASS": "accounts.identity.validator.Validator",
    "SCOPES_BACKEND_CLASS": "accounts.identity.scopes_backend.SmartScopesBackend",
    "PKCE_REQUIRED": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": ACCESS_TOKEN_MINUTES * 60,
    "ID_TOKEN_EXPIRE_SECONDS": ACCESS_TOKEN_MINUTES * 60,
    "REFRESH_TOKEN_EXPIRE_SECONDS": REFRESH_TOKEN_DAYS * 24 * 3600,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ROTATE_REFRESH_TOKEN": True,
    # A refresh token used twice revokes its whole family (a stolen token is detected).
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    # Native apps redirect to their own scheme or to the loopback (RFC 8252).
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https", "http", "org.clinaiops.app"],
    "REQUEST_APPROVAL_PROMPT": "force",
    # OAuth 2.0 Security BCP (RFC 9700): no implicit grant, S256 only, tokens never in the query
    # string of a resource request, the issuer in every authorization response.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    # Tokens are stored as their SHA-256 only: a copy of the database signs nobody in.
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "ERROR_RESPONSE_WITH_SCOPES": True,
    "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "none",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "ClinAIOps API",
    "DESCRIPTION": "Continuous therapeutic monitoring with a human in the loop.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Nothing from a CDN: the docs work offline and under a strict Content-Security-Policy.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Content-Security-Policy (django-csp) --------------------------------------------------------
# Scripts and <style> blocks run only from our own origin or with the response's nonce
# (``request.csp_nonce`` in templates): no inline handler, no ``style=`` attribute, no
# ``javascript:`` URL, nothing from elsewhere (tests/clinaiops/test_csp.py holds the templates to
# it). QR codes are inline SVG or ``data:`` images; the live worklist's websocket is same-origin
# (``'self'`` covers ws:/wss: to this host in CSP Level 3). Two pages widen it for themselves:
# Redoc's (inline styles and a blob: worker, clinaiops/urls.py) and those whose form redirects to
# an app — the SMART consent, an EHR launch — whose origin joins form-action (core.csp).
CONTENT_SECURITY_POLICY: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [NONE],
        "object-src": [NONE],
    },
}

# --- Static files, i18n -----------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise indexes it at start (collectstatic fills it)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Gzip and Brotli copies written by collectstatic; no manifest, so a page never fails for
    # a file collectstatic has not seen yet (tests, a first start).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LANGUAGE_CODE = "en-us"
# The clinic's time zone: what the portal shows and what a visit's "date and time" means. Stored
# times stay UTC; each patient's own zone (``Patient.time_zone``) is used where it matters.
TIME_ZONE = os.environ.get("CLINIC_TIME_ZONE", "UTC")
try:
    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
    message = f"CLINIC_TIME_ZONE={TIME_ZONE!r} is not an IANA time zone"
    raise ImproperlyConfigured(message) from error
USE_I18N = True
USE_TZ = True
# The emergency number the patient is told to call (a crisis alert, urgent words in a message).
EMERGENCY_PHONE_NUMBER = os.environ.get("EMERGENCY_PHONE_NUMBER", "911")
# How long the link to a patient's copy of their record lasts once the copy is ready.
RECORD_EXPORT_TTL_HOURS = float(os.environ.get("RECORD_EXPORT_TTL_HOURS", "24"))

# --- Logging: one JSON object per line, no PHI --------------------------------------------------

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "clinaiops.logging.RequestContextFilter"}},
    "formatters": {"json": {"()": "clinaiops.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's request logger repeats the URL (which may carry identifiers) for every 4xx;
        # our access log records the route pattern instead.
        "django.request": {"level": "ERROR", "propagate": True},
        "django.server": {"level": "ERROR", "propagate": True},
        # django-axes logs usernames and credentials metadata on every failure.
        "axes": {"level": "ERROR", "propagate": True},
        "daphne": {"level": "WARNING", "propagate": True},
        # Task results are ids and counts, but one line per task drowns the useful lines.
        "celery.app.trace": {"level": "WARNING", "propagate": True},
        # shap logs each explanation's values at INFO: a patient's contributions, not for logs.
        "shap": {"level": "WARNING", "propagate": True},
    },
}
