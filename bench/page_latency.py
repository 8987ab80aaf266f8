"""Each bench prescriber's first FHIR page of 50, one request at a time, on a fresh growth
base: `.venv/bin/python -m bench.page_latency 10000 1000000` (one base after the other).

What a page costs each prescriber without the queueing of c=8, so that a growth ratio of the
page's p50 can be told apart from a change in the page's content between bases
(bench/RESULTS.md, 2026-12-07).
"""

import statistics
import sys
import time

from bench import database, growth, prepare, server
from bench import run as run_module
from bench.client import Connection
from bench.console import log
from bench.scenarios import FHIR_JSON, fhir_page_query

WARMUP, REQUESTS, PRESCRIBERS = 30, 300, 8


def measure(size: int) -> list[float]:
    """The p50 (ms) of each of the first PRESCRIBERS bench prescribers' first page."""
    config = run_module.Config.from_env()
    _, db, env, accounts = growth.prepare_base(config, run_module, size)
    try:
        epu = server.start("wsgi:app", config.gunicorn, env, run_module.OUT, "epu")
        try:
            world = prepare.make_world(epu, *accounts)
            prepare.fill_read_codes(world)
            problem = fhir_page_query(world)
            if problem:
                raise RuntimeError(problem)
            connection = Connection(world.port)
            medians = []
            for party in world.prescribers[:PRESCRIBERS]:
                headers = {"Accept": FHIR_JSON}
                payload = world.request("GET", world.fhir_page_path, party, headers=headers)
                for _ in range(WARMUP):
                    connection.exchange(payload)
                latencies = []
                for _ in range(REQUESTS):
                    began = time.perf_counter()
                    connection.exchange(payload)
                    latencies.append((time.perf_counter() - began) * 1000)
                medians.append(statistics.median(latencies))
            connection.close()
            return medians
        finally:
            epu.stop()
    finally:
        database.drop(db)


def main() -> int:
    for size in (int(argument) for argument in sys.argv[1:]):
        medians = measure(size)
        shown = ", ".join(f"{median:.2f}" for median in medians)
        log(f"base {size}: p50 per prescriber (ms, c=1): {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
