"""Figures of issue 13 (hardening), measured on real servers: the PDF worst case, a photo scan
with its peak memory, "not yours" against "no such" latencies, and ordinary requests while 200
slow clients are connected (through the front of `make run`, and to bare gunicorn)."""

import contextlib
import io
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import server as servers
from bench.client import call
from bench.database import Account, Database
from bench.scenarios import get_token
from bench.server import REPO, GunicornSettings

SLOW_CONNECTIONS = 200
PAIRS = 200


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _big_prescription() -> bytes:
    line = {
        "text": "Examen " + "x" * 490,
        "comment": "c" * 1000,
        "sampling_instructions": "s" * 1000,
        "patient_instructions": ["MED-1165"] * 10,
    }
    body = {
        "patient": {"sex": "female", "birth_date": "1969-05-01"},
        "clinical_context": "z" * 2000,
        "lines": [line] * 50,
    }
    return json.dumps(body).encode()


def _photo(port: int, auth: dict, code: str) -> bytes:
    from PIL import Image

    png = call(port, "GET", f"/api/v1/prescriptions/{code}/qr.png?scale=12", headers=auth).body
    page = Image.new("L", (4000, 4000), 255)
    page.paste(Image.open(io.BytesIO(png)), (200, 200))
    out = io.BytesIO()
    page.save(out, "PNG", optimize=True)
    return out.getvalue()


def _multipart(image: bytes) -> tuple[bytes, str]:
    boundary = "epu-bench-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="o.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def documents_and_scans(port: int, worker: int, prescriber: dict, lab: dict, other: dict) -> list:
    rows = []
    created = call(
        port, "POST", "/api/v1/prescriptions", headers=prescriber, body=_big_prescription()
    )
    code = created.json()["code"]
    path = f"/api/v1/prescriptions/{code}/ordonnance.pdf"
    first = _timed(lambda: call(port, "GET", path, headers=prescriber))
    cached = [_timed(lambda: call(port, "GET", path, headers=prescriber)) for _ in range(20)]
    rows.append(("ordonnance.pdf, 50 long lines, first rendering", f"{first * 1000:.0f} ms"))
    rows.append(("ordonnance.pdf, same version again (cached)", _ms(cached)))

    small = call(port, "POST", "/api/v1/prescriptions", headers=prescriber,
                 body=json.dumps({"patient": {"sex": "male", "birth_date": "1970-01-01"},
                                  "lines": [{"text": "Ferritine"}]}).encode())  # fmt: skip
    image_code = small.json()["code"]
    body, content_type = _multipart(_photo(port, prescriber, image_code))
    scans = [
        _timed(
            lambda: call(
                port, "POST", "/api/v1/scans", headers=lab, body=body, content_type=content_type
            )
        )  # fmt: skip
        for _ in range(10)
    ]
    rows.append(("scan of a 16-megapixel PNG photo", _ms(scans)))
    idle = _kib(worker, "VmRSS")
    Path(f"/proc/{worker}/clear_refs").write_text("5")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: call(port, "POST", "/api/v1/scans", headers=lab, body=body,
                                     content_type=content_type), range(8)))  # fmt: skip
    peak = _kib(worker, "VmHWM")
    rows.append(
        ("8 such scans in parallel: worker peak RSS over idle", f"{(peak - idle) / 1024:.0f} MB")
    )

    unknown = "/api/v1/prescriptions/01S2TBPZ2JCNZZYGH6"
    mine = f"/api/v1/prescriptions/{image_code}"
    not_yours, missing, slower = [], [], 0
    for _ in range(PAIRS):
        a = _timed(lambda: call(port, "GET", mine, headers=other))
        b = _timed(lambda: call(port, "GET", unknown, headers=other))
        not_yours.append(a)
        missing.append(b)
        slower += a > b
    rows.append(("GET another prescriber's prescription (404)", _ms(not_yours)))
    rows.append(("GET an unknown code (404)", _ms(missing)))
    rows.append(("pairs where 'not yours' was the slower", f"{slower * 100 / PAIRS:.0f} %"))
    return rows


def worst_fhir_page(port: int, prescriber: dict) -> list:
    """The largest page a prescriber can ask for: 200 ServiceRequests of maximal text."""
    from datetime import UTC, datetime, timedelta

    since = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = _big_prescription()
    for _ in range(4):  # 4 x 50 lines: one full page of _count=200
        call(port, "POST", "/api/v1/prescriptions", headers=prescriber, body=body)
    path = f"/fhir/ServiceRequest?_count=200&_lastUpdated=ge{since}"  # these only
    sizes, samples, entries = [], [], 0
    for _ in range(10):
        started = time.perf_counter()
        response = call(port, "GET", path, headers=prescriber)
        samples.append(time.perf_counter() - started)
        sizes.append(len(response.body))
        entries = len(response.json().get("entry", []))
    return [(f"FHIR page of {entries} ServiceRequests of maximal text (_count=200)",
             f"{_ms(samples)}, {max(sizes) / 1e6:.2f} MB")]  # fmt: skip


def _slow_clients(port: int) -> list[socket.socket]:
    sockets = []
    for n in range(SLOW_CONNECTIONS):
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        if n % 2:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        else:
            conn.sendall(b"POST /api/v1/scans HTTP/1.1\r\nContent-Length: 100000\r\n\r\n{")
        sockets.append(conn)
    return sockets


def ordinary_while_slow(port: int, auth: dict, seconds: float = 8.0) -> str:
    stop = threading.Event()
    slow = _slow_clients(port)

    def trickle():
        while not stop.wait(1):
            for conn in slow:
                with contextlib.suppress(OSError):
                    conn.sendall(b"a")

    threading.Thread(target=trickle, daemon=True).start()
    samples, failures = [], 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                status = call(port, "GET", "/api/v1/prescriptions?limit=1", headers=auth).status
                failures += status != 200
            except OSError:
                failures += 1
            samples.append(time.perf_counter() - started)
    finally:
        stop.set()
        for conn in slow:
            conn.close()
    return f"{_ms(samples)}, {len(samples)} requests, {failures} failed"


def _front(settings: GunicornSettings, env: dict[str, str], out: Path) -> tuple:
    port, sock = servers.free_port(), str(out / "hardening-gunicorn.sock")
    command = [sys.executable, "-m", "api.front", "--listen", f"127.0.0.1:{port}",
               "--socket", sock, "--", str(servers.GUNICORN), "--bind", f"unix:{sock}",
               "--workers", str(settings.workers), "--worker-class", "gthread",
               "--threads", str(settings.threads), "--no-control-socket", "wsgi:app"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, env={**_plain_env(), **env},  # noqa: S603
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    for _ in range(300):  # the front answers 502 until gunicorn listens
        with contextlib.suppress(OSError):
            if call(port, "GET", "/healthz").status == 200:
                break
        time.sleep(0.1)
    return port, process


def _plain_env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if not key.startswith("EPU_")}


def run(settings: GunicornSettings, db: Database, env: dict, accounts, out: Path) -> str:
    prescribers, labs = accounts
    rows: list[tuple[str, str]] = []
    gunicorn = servers.start("wsgi:app", GunicornSettings(1, settings.threads), env, out, "hard")
    try:
        auth = _auth(gunicorn.port, prescribers[0], labs[0], prescribers[1])
        rows += documents_and_scans(gunicorn.port, gunicorn.worker_pids()[0], *auth)
        rows += worst_fhir_page(gunicorn.port, auth[2])
        rows.append(("200 slow clients, bare gunicorn: ordinary requests",
                     ordinary_while_slow(gunicorn.port, auth[0], 4)))  # fmt: skip
    finally:
        gunicorn.stop()
    port, front = _front(GunicornSettings(1, settings.threads), env, out)
    try:
        auth = _auth(port, prescribers[0], labs[0], prescribers[1])
        rows.append(("200 slow clients, through the front of make run: ordinary requests",
                     ordinary_while_slow(port, auth[0])))  # fmt: skip
    finally:
        front.terminate()
        front.wait(30)
    lines = ["## Hardening (issue 13)", "", "| measure | figure |", "|---|---|"]
    lines += [f"| {name} | {figure} |" for name, figure in rows]
    return "\n".join(lines) + "\n"


def _auth(port: int, prescriber: Account, lab: Account, other: Account) -> tuple[dict, ...]:
    return tuple(
        {"Authorization": f"Bearer {get_token(port, a)}"} for a in (prescriber, lab, other)
    )


def main() -> int:
    """`python -m bench.hardening`: these figures alone, on a database of their own."""
    import secrets

    from bench import database
    from bench.run import OUT, make_accounts, service_env

    OUT.mkdir(parents=True, exist_ok=True)
    db = database.create(database.DEFAULT_SERVER)
    try:
        env = service_env(db, secrets.token_urlsafe(32))
        database.prepare(db, env)
        print(run(GunicornSettings(1, 4), db, env, make_accounts(db), OUT))
    finally:
        database.drop(db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
