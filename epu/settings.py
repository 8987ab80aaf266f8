"""Configuration from the environment, shared by the web app and the command line."""

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


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
    # How long an instance may go on trusting a client it checked: a revoked client is refused
    # on every instance within this delay (0: checked on every request).
    revocation_check_seconds: float = 0.5
    # The public address of the service (https://host[/prefix]): every absolute URL EPU gives
    # (FHIR fullUrl, paging links, the token URL) starts with it. Unset: taken from the
    # request, trusting X-Forwarded-* only from the proxies below.
    public_base_url: str | None = None
    trusted_proxies: tuple[str, ...] = ()  # addresses or networks of the reverse proxies

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
            revocation_check_seconds=float(os.environ.get("EPU_REVOCATION_CHECK_SECONDS", 0.5)),
            public_base_url=(os.environ.get("EPU_PUBLIC_BASE_URL") or "").rstrip("/") or None,
            trusted_proxies=tuple(
                item.strip()
                for item in os.environ.get("EPU_TRUSTED_PROXIES", "").split(",")
                if item.strip()
            ),
        )

    def derived_key(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose, derived from the master secret."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
        return hkdf.derive(self.secret_key.encode())
