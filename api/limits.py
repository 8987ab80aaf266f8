"""Request limits shared by every instance when EPU_REDIS_URL is set (in memory otherwise)."""

import math
import time

from flask import Flask, current_app
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from api.errors import Problem
from epu.actors import Actor
from epu.settings import Settings

FAILED_SCAN_WINDOW = "10 minutes"
LOOKUP_WINDOW = "10 minutes"


class Limits:
    def __init__(self, settings: Settings):
        storage = storage_from_string(settings.redis_url or "memory://")
        # The failed-scan pause must be exact (a moving window); the general request limit is
        # counted on every request, so it takes the O(1) fixed window.
        self._limiter = MovingWindowRateLimiter(storage)
        self._request_limiter = FixedWindowRateLimiter(storage)
        self._requests = parse(settings.rate_limit)
        self._failed_scans = parse(f"{settings.failed_scan_limit}/{FAILED_SCAN_WINDOW}")
        self._lookups = parse(f"{settings.lookup_limit}/{LOOKUP_WINDOW}")

    @staticmethod
    def _refuse(limiter, item, identifiers: tuple[str, str], detail: str) -> Problem:
        reset = limiter.get_window_stats(item, *identifiers).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        return Problem(429, detail, headers={"Retry-After": str(retry_after)})

    def count_request(self, actor: Actor) -> None:
        identifiers = ("requests", str(actor.client_pk))
        if not self._request_limiter.hit(self._requests, *identifiers):
            raise self._refuse(
                self._request_limiter,
                self._requests,
                identifiers,
                "Too many requests from this client; slow down.",
            )

    def check_scans_allowed(self, actor: Actor) -> None:
        identifiers = ("failed-scans", str(actor.client_pk))
        if not self._limiter.test(self._failed_scans, *identifiers):
            raise self._refuse(
                self._limiter,
                self._failed_scans,
                identifiers,
                "Too many scans of unknown codes from this laboratory; scanning is paused.",
            )

    def count_failed_scan(self, actor: Actor) -> bool:
        """Count a scan of an unknown code; True when this one exhausts the allowance."""
        identifiers = ("failed-scans", str(actor.client_pk))
        self._limiter.hit(self._failed_scans, *identifiers)
        return not self._limiter.test(self._failed_scans, *identifiers)

    def count_lookup(self, actor: Actor) -> None:
        """Count a patient lookup (by INS and birth date); 429 past the allowance."""
        identifiers = ("patient-lookups", str(actor.client_pk))
        if not self._limiter.hit(self._lookups, *identifiers):
            raise self._refuse(
                self._limiter,
                self._lookups,
                identifiers,
                "Too many patient lookups from this client; lookups are paused.",
            )


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["epu.limits"] = Limits(settings)


def limits() -> Limits:
    return current_app.extensions["epu.limits"]
