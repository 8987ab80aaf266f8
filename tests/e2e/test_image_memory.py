"""Decoding photos is bounded in memory: 8 large uploads at once cost a worker under 300 MB."""

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from qr.render import render_png

MB = 1024 * 1024


def kib(status: str, field: str) -> int:
    line = next(line for line in status.splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


def photo(code: str, size: tuple[int, int], fmt: str) -> bytes:
    page = Image.new("L", size, 255)
    page.paste(Image.open(io.BytesIO(render_png(code, 12))), (200, 200))
    out = io.BytesIO()
    page.save(out, fmt, **({"quality": 70} if fmt == "JPEG" else {"optimize": True}))
    return out.getvalue()


def test_eight_parallel_large_photos_stay_under_300_mb_over_the_idle_worker(
    start_server, register, create_prescription
):
    server = start_server("a", workers=1)
    prescriber, lab = register(server, "prescriber"), register(server, "lab")
    code = create_prescription(server, prescriber)["code"]
    (worker,) = server.worker_pids()
    server.get("/healthz")
    status = Path(f"/proc/{worker}/status")
    idle = kib(status.read_text(), "VmRSS")
    Path(f"/proc/{worker}/clear_refs").write_text("5")  # peak RSS from now on
    images = [photo(code, (4000, 4000), "PNG")] * 4 + [photo(code, (8000, 5000), "JPEG")] * 4

    def upload(image: bytes) -> int:
        kind = "image/png" if image.startswith(b"\x89PNG") else "image/jpeg"
        return server.post(
            "/api/v1/scans",
            files={"image": ("ordonnance", image, kind)},
            headers=lab.headers,
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(upload, images))
    peak = kib(status.read_text(), "VmHWM")
    print(f"peak over idle: {(peak - idle) / 1024:.0f} MB, statuses {statuses}")
    assert set(statuses) <= {200, 503}, statuses  # read, or told to retry: never a crash
    assert statuses.count(200) >= 1
    assert (peak - idle) * 1024 < 300 * MB, f"{(peak - idle) / 1024:.0f} MB over idle"
