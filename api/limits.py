"""Request limits shared by every instance when EPU_REDIS_URL is set (in memory otherwise)."""

import math
import time

from flask import Flask, current_app
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from api.errors import Problem
from epu.actors import Actor
from epu.settings import Settings

FAILED_SCAN_WINDOW = "10 minutes"


class Limits:
    def __init__(self, settings: Settings):
        storage = storage_from_string(settings.redis_url or "memory://")
        self._limiter = MovingWindowRateLimiter(storage)
        self._requests = parse(settings.rate_limit)
        self._failed_scans = parse(f"{settings.failed_scan_limit}/{FAILED_SCAN_WINDOW}")

    def _refuse(self, item, key: str, detail: str) -> Problem:
        reset = self._limiter.get_window_stats(item, key).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        return Problem(429, detail, headers={"Retry-After": str(retry_after)})

    def count_request(self, actor: Actor) -> None:
        if not self._limiter.hit(self._requests, "requests", str(actor.client_pk)):
            raise self._refuse(
                self._requests,
                str(actor.client_pk),
                "Too many requests from this client; slow down.",
            )

    def check_scans_allowed(self, actor: Actor) -> None:
        if not self._limiter.test(self._failed_scans, "failed-scans", str(actor.client_pk)):
            raise self._refuse(
                self._failed_scans,
                str(actor.client_pk),
                "Too many scans of unknown codes from this laboratory; scanning is paused.",
            )

    def count_failed_scan(self, actor: Actor) -> bool:
        """Count a scan of an unknown code; True when this one exhausts the allowance."""
        self._limiter.hit(self._failed_scans, "failed-scans", str(actor.client_pk))
        return not self._limiter.test(self._failed_scans, "failed-scans", str(actor.client_pk))


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["epu.limits"] = Limits(settings)


def limits() -> Limits:
    return current_app.extensions["epu.limits"]
