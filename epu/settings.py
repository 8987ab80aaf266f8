"""Configuration from the environment, shared by the web app and the command line."""

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _flag(name: str) -> bool:
    return os.environ.get(name, "") == "1"


def _secret_from_instance(instance_dir: Path) -> str:
    """The embedded mode's secret: generated once, kept beside the SQLite database."""
    path = instance_dir / "secret_key"
    if not path.exists():
        instance_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: str = field(repr=False)
    token_ttl: int = 3600
    validity_days: int = 365
    failed_scan_limit: int = 20
    lookup_limit: int = 30
    rate_limit: str = "1200/minute"
    redis_url: str | None = None
    max_body_bytes: int = 256 * 1024
    limits_path: str | None = None  # without Redis: the file the workers share their limits in
    db_connect_timeout: int = 2  # seconds (PostgreSQL)
    db_statement_timeout: float = 4.0  # seconds (PostgreSQL; 0: none)
    # How long an instance may go on trusting a client it checked: a revoked client is refused
    # on every instance within this delay (0: checked on every request).
    revocation_check_seconds: float = 0.5
    # How often an instance writes the counts of repeated reads to their audit events (0: at
    # each read); the first read of a party is always written before the data is returned.
    read_count_flush_seconds: float = 30.0
    # The public address of the service (https://host[/prefix]): every absolute URL EPU gives
    # (FHIR fullUrl, paging links, the token URL) starts with it. Unset: taken from the
    # request, trusting X-Forwarded-* only from the proxies below.
    public_base_url: str | None = None
    trusted_proxies: tuple[str, ...] = ()  # addresses or networks of the reverse proxies
    webhooks: "WebhookSettings" = field(default_factory=lambda: WebhookSettings())

    @classmethod
    def from_env(cls) -> "Settings":
        instance_dir = Path(os.environ.get("EPU_INSTANCE_DIR", "instance")).resolve()
        database_url = os.environ.get("EPU_DATABASE_URL") or f"sqlite:///{instance_dir / 'epu.db'}"
        if database_url.startswith("sqlite:///") and not database_url.startswith("sqlite:///:"):
            Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return cls(
            database_url=database_url,
            secret_key=os.environ.get("EPU_SECRET_KEY") or _secret_from_instance(instance_dir),
            token_ttl=_int("EPU_TOKEN_TTL", 3600),
            validity_days=_int("EPU_VALIDITY_DAYS", 365),
            failed_scan_limit=_int("EPU_FAILED_SCAN_LIMIT", 20),
            lookup_limit=_int("EPU_LOOKUP_LIMIT", 30),
            rate_limit=os.environ.get("EPU_RATE_LIMIT", "1200/minute"),
            redis_url=os.environ.get("EPU_REDIS_URL") or None,
            limits_path=str(instance_dir / "limits.db"),
            db_connect_timeout=_int("EPU_DB_CONNECT_TIMEOUT", 2),
            db_statement_timeout=float(os.environ.get("EPU_DB_STATEMENT_TIMEOUT", 4.0)),
            revocation_check_seconds=float(os.environ.get("EPU_REVOCATION_CHECK_SECONDS", 0.5)),
            read_count_flush_seconds=float(os.environ.get("EPU_READ_COUNT_FLUSH_SECONDS", 30)),
            public_base_url=(os.environ.get("EPU_PUBLIC_BASE_URL") or "").rstrip("/") or None,
            trusted_proxies=tuple(
                item.strip()
                for item in os.environ.get("EPU_TRUSTED_PROXIES", "").split(",")
                if item.strip()
            ),
            webhooks=WebhookSettings.from_env(),
        )

    def derived_key(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose, derived from the master secret."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
        return hkdf.derive(self.secret_key.encode())


@dataclass(frozen=True)
class WebhookSettings:
    """Outgoing webhooks: what may be called, and how the dispatcher retries."""

    allow_http: bool = False  # EPU_WEBHOOK_ALLOW_HTTP=1: plain http accepted (tests only)
    allow_private: bool = False  # EPU_WEBHOOK_ALLOW_PRIVATE=1: tests and closed networks only
    timeout: float = 5.0  # a 2xx within this many seconds is a success
    retry_base: float = 5.0  # first retry delay; doubles up to retry_cap
    retry_cap: float = 3600.0
    retry_for: float = 24 * 3600.0  # then the subscription is suspended
    workers: int = 32  # global pool of concurrent deliveries per dispatcher
    per_subscription: int = 4  # concurrent deliveries to one subscription
    poll: float = 0.1  # seconds between looks at the outbox when idle
    lease: float = 20.0  # a dispatcher that died: its deliveries are taken over after this

    @classmethod
    def from_env(cls) -> "WebhookSettings":
        return cls(
            allow_http=_flag("EPU_WEBHOOK_ALLOW_HTTP"),
            allow_private=_flag("EPU_WEBHOOK_ALLOW_PRIVATE"),
            retry_base=_float("EPU_WEBHOOK_RETRY_BASE", 5.0),
            retry_cap=_float("EPU_WEBHOOK_RETRY_CAP", 3600.0),
            retry_for=_float("EPU_WEBHOOK_RETRY_FOR", 24 * 3600.0),
            workers=_int("EPU_DISPATCH_WORKERS", 32),
            per_subscription=_int("EPU_DISPATCH_PER_SUBSCRIPTION", 4),
            poll=_float("EPU_DISPATCH_POLL", 0.1),
            lease=_float("EPU_DISPATCH_LEASE", 20.0),
        )
