"""Settings read from the environment only: no secret and no host name in the repository.

Development and test defaults are safe and self-contained (SQLite in ``instance/``,
inline jobs on fakeredis, outbox-only mail); production refuses to start without a
``SECRET_KEY`` rather than sign links with a guessable default.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _ints(name: str, default: str) -> tuple[int, ...]:
    return tuple(int(part) for part in os.environ.get(name, default).replace(" ", "").split(",") if part)


def _redis_url() -> str | None:
    """REDIS_URL with a connect timeout, so a Redis that drops packets cannot hang a request
    on the after-commit enqueue (the outbox sweep delivers later anyway)."""
    url = os.environ.get("REDIS_URL") or None
    if url and "socket_connect_timeout" not in url:
        url += ("&" if "?" in url else "?") + "socket_connect_timeout=2"
    return url


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{INSTANCE / 'app.db'}"
    # Heroku-style URLs name the driver "postgres://"; SQLAlchemy wants psycopg 3 spelled out.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Config:
    """Base settings shared by every environment."""

    ENV_NAME = "base"
    SECRET_KEY = os.environ.get("SECRET_KEY")
    SQLALCHEMY_DATABASE_URI = _database_url()
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:5000").rstrip("/")

    REDIS_URL = _redis_url()
    # Queues are declared once here: the worker listens to them in this order.
    RQ_QUEUES = ["default", "emails"]
    # Queues whose jobs ``flask rq worker`` runs in its own process (short, frequent jobs); the
    # others each get Flask-RQ's fresh work-horse process (long exports). See app/workers.py.
    RQ_IN_PROCESS_QUEUES = ["emails"]
    RQ_CONNECTION: str | dict = REDIS_URL or {}
    RQ_ASYNC = bool(REDIS_URL)
    RQ_CONNECTION_CLASS = "redis.Redis" if REDIS_URL else "fakeredis.FakeRedis"

    MAIL_SERVER = os.environ.get("MAIL_SERVER") or None
    MAIL_PORT = int(os.environ.get("MAIL_PORT", "25"))
    MAIL_USE_TLS = _bool("MAIL_USE_TLS", False)
    MAIL_USE_SSL = _bool("MAIL_USE_SSL", False)
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME") or None
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD") or None
    MAIL_DEFAULT_SENDER = os.environ.get(
        "MAIL_DEFAULT_SENDER", "Place des Entreprises <contact@place-des-entreprises.example>"
    )

    # Outbox delivery: attempts before an email is marked failed, and the waits between them.
    MAIL_MAX_ATTEMPTS = int(os.environ.get("MAIL_MAX_ATTEMPTS", "8"))
    MAIL_RETRY_DELAYS = _ints("MAIL_RETRY_DELAYS", "60,300,1800,7200,21600")
    OUTBOX_SWEEP_GRACE_SECONDS = int(os.environ.get("OUTBOX_SWEEP_GRACE_SECONDS", "60"))
    # How often ``flask rq cron`` sweeps the outbox, and how many rows one delivery job sends
    # over one SMTP connection.
    OUTBOX_SWEEP_INTERVAL_SECONDS = int(os.environ.get("OUTBOX_SWEEP_INTERVAL_SECONDS", "60"))
    OUTBOX_BATCH_SIZE = int(os.environ.get("OUTBOX_BATCH_SIZE", "200"))
    # A delivery run's claim on its rows: a worker killed mid-batch leaves them to the sweep
    # once this has passed.
    OUTBOX_CLAIM_SECONDS = int(os.environ.get("OUTBOX_CLAIM_SECONDS", "300"))
    # An SMTP relay that stops answering fails the attempt after this long (retried later).
    MAIL_TIMEOUT_SECONDS = float(os.environ.get("MAIL_TIMEOUT_SECONDS", "30"))

    ROUTING_MODE = os.environ.get("ROUTING_MODE", "auto")
    # Requests from these domains (or full addresses) wait for staff instead of being routed.
    BLOCKED_EMAIL_DOMAINS = [
        d.strip().lower() for d in os.environ.get("BLOCKED_EMAIL_DOMAINS", "").split(",") if d.strip()
    ]
    RATELIMIT_ENABLED = _bool("RATELIMIT_ENABLED", True)
    # Number of reverse proxies in front of the app (a PaaS router: 1): the rate limits and the
    # logs then see the visitor's address from X-Forwarded-For instead of the proxy's.
    TRUSTED_PROXIES = int(os.environ.get("TRUSTED_PROXIES", "0"))
    RATELIMIT_STORAGE_URI = REDIS_URL or "memory://"
    # A Redis outage must not lose a business's request nor lock anyone out: the limits then
    # count in this process's memory, and any storage error lets the request through, logged.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_SWALLOW_ERRORS = True
    FORM_MIN_SECONDS = float(os.environ.get("FORM_MIN_SECONDS", "3"))
    # Posts of the public form per client address (Flask-Limiter syntax).
    PUBLIC_FORM_RATE_LIMIT = os.environ.get("PUBLIC_FORM_RATE_LIMIT", "5 per minute; 20 per hour")
    # Calls per API key (issue 16): a partner's site posts its visitors' requests, in bursts.
    API_RATE_LIMIT = os.environ.get("API_RATE_LIMIT", "120 per minute; 5000 per day")
    # Ask DNS whether the email's domain receives mail (needs network: off by default).
    EMAIL_CHECK_DELIVERABILITY = _bool("EMAIL_CHECK_DELIVERABILITY", False)
    INBOUND_EMAIL_DOMAIN = os.environ.get("INBOUND_EMAIL_DOMAIN") or None
    # Shared secret of ``POST /inbound/email`` (header X-Inbound-Secret); unset, the endpoint is off.
    INBOUND_EMAIL_SECRET = os.environ.get("INBOUND_EMAIL_SECRET") or None
    # A reply address older than this is refused (held for staff): long enough for a slow answer.
    INBOUND_REPLY_MAX_AGE_DAYS = int(os.environ.get("INBOUND_REPLY_MAX_AGE_DAYS", "180"))
    # Replies must pass DKIM or SPF for the expert's domain, as the receiving MTA recorded in
    # « Authentication-Results »: "auto" when the header is there, "on" always, "off" never.
    INBOUND_REQUIRE_AUTH = os.environ.get("INBOUND_REQUIRE_AUTH", "auto").strip().lower()
    # The MTA's authserv-id: only its own « Authentication-Results » are read (any other could
    # have been written by the sender). Unset: every such header is read.
    INBOUND_AUTHSERV_ID = (os.environ.get("INBOUND_AUTHSERV_ID") or "").strip().lower() or None

    # Comments posted within this many seconds of each other make one notification email.
    COMMENT_GROUPING_SECONDS = int(os.environ.get("COMMENT_GROUPING_SECONDS", "60"))
    # A need still waiting after this many days: « Expirés » in the expert's inbox, and the
    # dashboard's « sans preneur » card.
    DASHBOARD_NO_TAKER_DAYS = int(os.environ.get("DASHBOARD_NO_TAKER_DAYS", "5"))
    # Follow-up (``flask followup run``, daily from ``flask rq cron``): days after the request
    # when the business hears « Suivi de votre demande » if nobody took it, when each waiting
    # expert gets « Dernière chance », and when the need is given up.
    FOLLOWUP_REMINDER_DAYS = int(os.environ.get("FOLLOWUP_REMINDER_DAYS", "9"))
    FOLLOWUP_LAST_CHANCE_DAYS = int(os.environ.get("FOLLOWUP_LAST_CHANCE_DAYS", "21"))
    # The failure day is also when a waiting need shows as « Expiré » in the expert's inbox
    # (INBOX_EXPIRY_DAYS, its former name, is still read).
    FOLLOWUP_FAILURE_DAYS = int(os.environ.get("FOLLOWUP_FAILURE_DAYS") or os.environ.get("INBOX_EXPIRY_DAYS") or "45")
    # How many days after the failure day a missed failure email is still sent (an outage, or
    # the first run over an old backlog: needs given up long ago get none).
    FOLLOWUP_CATCH_UP_DAYS = int(os.environ.get("FOLLOWUP_CATCH_UP_DAYS", "14"))
    # Days after the first « Aide proposée » when the business receives the satisfaction survey.
    FOLLOWUP_SURVEY_DAYS = int(os.environ.get("FOLLOWUP_SURVEY_DAYS", "10"))
    # Where businesses may write to the team (named in the follow-up emails).
    CONTACT_EMAIL = os.environ.get("CONTACT_EMAIL", "contact@place-des-entreprises.example")
    # The request lists' immediate CSV export stops here; larger lists go through the
    # prepared export (a job with a progress bar).
    EXPORT_IMMEDIATE_MAX_ROWS = int(os.environ.get("EXPORT_IMMEDIATE_MAX_ROWS", "10000"))
    REGISTRY_TIMEOUT_SECONDS = float(os.environ.get("REGISTRY_TIMEOUT_SECONDS", "3"))
    ADDRESSBOOK_IMPORT_MAX_BYTES = int(os.environ.get("ADDRESSBOOK_IMPORT_MAX_BYTES", str(5 * 1024 * 1024)))

    JDMA_URL = os.environ.get("JDMA_URL", "https://jedonnemonavis.numerique.gouv.fr/Demarches/0000?button=0000")
    EXPERT_LINK_MAX_AGE_DAYS = int(os.environ.get("EXPERT_LINK_MAX_AGE_DAYS", "90"))
    COMPANY_REGISTRY = os.environ.get("COMPANY_REGISTRY", "fake")
    RECHERCHE_ENTREPRISES_URL = os.environ.get("RECHERCHE_ENTREPRISES_URL", "https://recherche-entreprises.api.gouv.fr")

    # Accounts: invitation and reset links, lockout, sessions, breached passwords.
    INVITATION_MAX_AGE_HOURS = int(os.environ.get("INVITATION_MAX_AGE_HOURS", "72"))
    PASSWORD_RESET_MAX_AGE_MINUTES = int(os.environ.get("PASSWORD_RESET_MAX_AGE_MINUTES", "60"))
    # Failed logins on an address from one origin (IP address) that lock that origin out of
    # it, and for how long (an unknown address locks the same way: a lock reveals nothing);
    # the owner elsewhere is not locked out, and is told by email.
    LOGIN_MAX_FAILURES = int(os.environ.get("LOGIN_MAX_FAILURES", "5"))
    LOGIN_LOCK_MINUTES = int(os.environ.get("LOGIN_LOCK_MINUTES", "15"))
    # Failures on an address from every origin slow its next attempts down, never lock it.
    LOGIN_SLOWDOWN_SECONDS = float(os.environ.get("LOGIN_SLOWDOWN_SECONDS", "0.5"))
    LOGIN_SLOWDOWN_MAX_SECONDS = float(os.environ.get("LOGIN_SLOWDOWN_MAX_SECONDS", "3"))
    # Login posts per client address (Flask-Limiter syntax).
    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "10 per minute")
    # « Mot de passe oublié » posts per client address, and reset emails per address asked for.
    PASSWORD_RESET_RATE_LIMIT = os.environ.get("PASSWORD_RESET_RATE_LIMIT", "5 per minute; 20 per hour")
    PASSWORD_RESET_PER_EMAIL_LIMIT = os.environ.get("PASSWORD_RESET_PER_EMAIL_LIMIT", "3 per hour")
    # A back-office session ends after this long without a request, and this long after login.
    SESSION_IDLE_MINUTES = int(os.environ.get("SESSION_IDLE_MINUTES", "60"))
    PERMANENT_SESSION_LIFETIME = timedelta(hours=float(os.environ.get("SESSION_LIFETIME_HOURS", "12")))
    # Also ask Have I Been Pwned's range API (k-anonymity: only 5 hex characters of the SHA-1
    # leave the server); off by default (no network in development and CI), fails open.
    PWNED_PASSWORDS_API = _bool("PWNED_PASSWORDS_API", False)
    PWNED_PASSWORDS_API_URL = os.environ.get("PWNED_PASSWORDS_API_URL", "https://api.pwnedpasswords.com")
    PWNED_PASSWORDS_TIMEOUT_SECONDS = float(os.environ.get("PWNED_PASSWORDS_TIMEOUT_SECONDS", "2"))

    BABEL_DEFAULT_LOCALE = "fr"
    BABEL_DEFAULT_TIMEZONE = "Europe/Paris"
    FLASK_ADMIN_SWATCH = "default"
    WTF_CSRF_TIME_LIMIT = 8 * 3600
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    MAX_CONTENT_LENGTH = 10 * 1024 * 1024  # address book uploads included

    GEO_DATA_DIR = os.environ.get(
        "GEO_DATA_DIR", str(ROOT / "node_modules" / "@etalab" / "decoupage-administratif" / "data")
    )
    DSFR_DIST_DIR = str(ROOT / "node_modules" / "@gouvfr" / "dsfr" / "dist")
    CATALOG_DEFAULT_PATH = str(ROOT / "data" / "catalog.csv")


class DevelopmentConfig(Config):
    ENV_NAME = "development"
    SECRET_KEY = Config.SECRET_KEY or "dev-only-not-secret"


class TestingConfig(Config):
    ENV_NAME = "testing"
    LOGIN_SLOWDOWN_SECONDS = 0.0
    TESTING = True
    SECRET_KEY = "test-only-not-secret"  # noqa: S105 - tests only
    SQLALCHEMY_DATABASE_URI = os.environ.get("TEST_DATABASE_URL", "sqlite://")
    RATELIMIT_ENABLED = False
    FORM_MIN_SECONDS = 0.0
    MAIL_SERVER = None
    RQ_CONNECTION: str | dict = {}
    RQ_ASYNC = False
    RQ_CONNECTION_CLASS = "fakeredis.FakeRedis"
    # A back-office view that fails raises in tests instead of flashing a generic message, and a
    # template printing an unknown variable fails instead of rendering blank (app.templating).
    FLASK_ADMIN_RAISE_ON_VIEW_EXCEPTION = True
    JINJA_LOUD_UNDEFINED = True


class ProductionConfig(Config):
    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = True


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_for(name: str | None = None) -> type[Config]:
    """Pick the settings class from ``APP_ENV`` (development unless told otherwise)."""
    name = name or os.environ.get("APP_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise RuntimeError(f"APP_ENV inconnu : {name!r} (attendu : {', '.join(CONFIGS)})") from None
