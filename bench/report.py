"""Rows of results, ratios to the baselines, targets, and the table as text, Markdown and JSON."""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TARGET_CONCURRENCY = 8  # issue 14: ratios and p99 are judged at c=8


@dataclass
class Row:
    scenario: str
    title: str
    concurrency: int
    requests: int
    seconds: float
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    statuses: dict[str, int]
    worker_cpu_ms: float | None  # gunicorn workers' CPU per request
    db_cpu_ms: float | None  # PostgreSQL backends' CPU per request
    client_cpu_us: float  # the load generator's CPU per request
    noise: float  # share of the machine's CPU used by other processes meanwhile
    baseline: str | None = None
    baseline_throughput: float | None = None  # measured right after this row
    baseline_cpu_ms: float | None = None
    ratio: float | None = None
    cpu_ratio: float | None = None  # the same ratio estimated from CPU per request
    target_ratio: float | None = None
    p99_limit_ms: float | None = None
    note: str = ""
    verdicts: list[str] = field(default_factory=list)

    @property
    def met(self) -> str:
        if not self.verdicts:
            return "-"
        return "no" if any(v.startswith("FAIL") for v in self.verdicts) else "yes"


def judge(rows: list[Row]) -> None:
    """Ratio to the matching baseline at the same concurrency, then the targets (at c=8)."""
    for row in rows:
        if row.baseline and row.baseline_throughput and row.requests:
            row.ratio = row.throughput / row.baseline_throughput
            if _server_cpu(row) and row.baseline_cpu_ms:
                row.cpu_ratio = row.baseline_cpu_ms / _server_cpu(row)
        row.verdicts = []
        judged = row.concurrency == TARGET_CONCURRENCY and row.requests
        if judged and row.target_ratio is not None and row.ratio is not None:
            ok = row.ratio >= row.target_ratio
            row.verdicts.append(f"{'ok' if ok else 'FAIL'} ratio>={row.target_ratio:.2f}")
        if judged and row.p99_limit_ms is not None:
            ok = row.p99_ms < row.p99_limit_ms
            row.verdicts.append(f"{'ok' if ok else 'FAIL'} p99<{row.p99_limit_ms:.0f}ms")
        if row.errors:
            row.verdicts.append(f"FAIL {row.errors} errors")


def _server_cpu(row: Row) -> float:
    return (row.worker_cpu_ms or 0.0) + (row.db_cpu_ms or 0.0)


def _cpu(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


COLUMNS = [
    ("scenario", 34, lambda r: r.title),
    ("c", 3, lambda r: str(r.concurrency)),
    ("requests", 8, lambda r: str(r.requests)),
    ("req/s", 8, lambda r: f"{r.throughput:.1f}"),
    ("p50 ms", 7, lambda r: f"{r.p50_ms:.2f}"),
    ("p95 ms", 7, lambda r: f"{r.p95_ms:.2f}"),
    ("p99 ms", 7, lambda r: f"{r.p99_ms:.2f}"),
    ("err", 4, lambda r: str(r.errors)),
    ("baseline", 8, lambda r: r.baseline or "-"),
    ("base req/s", 10, lambda r: f"{r.baseline_throughput:.1f}" if r.baseline_throughput else "-"),
    ("ratio", 5, lambda r: "-" if r.ratio is None else f"{r.ratio:.2f}"),
    ("target", 6, lambda r: r.met),
    ("cpu ratio", 9, lambda r: "-" if r.cpu_ratio is None else f"{r.cpu_ratio:.2f}"),
    ("wrk ms/req", 10, lambda r: _cpu(r.worker_cpu_ms)),
    ("db ms/req", 9, lambda r: _cpu(r.db_cpu_ms)),
    ("gen µs/req", 10, lambda r: f"{r.client_cpu_us:.0f}"),
    ("noise", 5, lambda r: f"{r.noise:.0%}"),
]


def text_table(rows: list[Row]) -> str:
    header = "  ".join(name.ljust(width) for name, width, _ in COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = [value(row).ljust(width) for _, width, value in COLUMNS]
        lines.append("  ".join(cells).rstrip() + (f"  ({row.note})" if row.note else ""))
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


TARGET_COLUMNS = [
    ("request (c=8)", 46, lambda r: r.title),
    ("req/s", 7, lambda r: f"{r.throughput:.0f}"),
    ("bare req/s", 10, lambda r: f"{r.baseline_throughput:.0f}" if r.baseline_throughput else "-"),
    ("ratio", 5, lambda r: "-" if r.ratio is None else f"{r.ratio:.2f}"),
    ("target", 6, lambda r: "-" if r.target_ratio is None else f">={r.target_ratio:.2f}"),
    ("", 4, lambda r: _verdict(None if r.target_ratio is None else r.ratio >= r.target_ratio)),
    ("p50 ms", 6, lambda r: f"{r.p50_ms:.1f}"),
    ("p99 ms", 6, lambda r: f"{r.p99_ms:.1f}"),
    ("p99 limit", 9, lambda r: "-" if r.p99_limit_ms is None else f"<{r.p99_limit_ms:.0f}"),
    ("", 4, lambda r: _verdict(None if r.p99_limit_ms is None else r.p99_ms < r.p99_limit_ms)),
]


def _target_rows(rows: list[Row]) -> list[Row]:
    return [
        row
        for row in rows
        if row.concurrency == TARGET_CONCURRENCY
        and row.requests
        and (row.target_ratio is not None or row.p99_limit_ms is not None)
        and (row.ratio is not None or row.target_ratio is None)
    ]


def targets_text(rows: list[Row]) -> str:
    """The issue's table: each judged row at c=8, its ratio to the bare floor and the targets."""
    header = "  ".join(name.ljust(width) for name, width, _ in TARGET_COLUMNS)
    lines = [header, "-" * len(header)]
    for row in _target_rows(rows):
        lines.append("  ".join(v(row).ljust(w) for _, w, v in TARGET_COLUMNS).rstrip())
    return "\n".join(lines)


def targets_markdown(rows: list[Row]) -> str:
    names = [name for name, _, _ in TARGET_COLUMNS]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in _target_rows(rows):
        lines.append("| " + " | ".join(value(row) for _, _, value in TARGET_COLUMNS) + " |")
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    names = [name for name, _, _ in COLUMNS]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in rows:
        cells = [value(row) for _, _, value in COLUMNS]
        if row.note:
            cells[0] += f" ({row.note})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def failures(rows: list[Row]) -> list[str]:
    return [
        f"{row.title} at c={row.concurrency}: {verdict}"
        + (f" (ratio {row.ratio:.2f})" if "ratio" in verdict and row.ratio else "")
        + (f" (p99 {row.p99_ms:.1f} ms)" if "p99" in verdict else "")
        for row in rows
        for verdict in row.verdicts
        if verdict.startswith("FAIL")
    ]


def write(out_dir: Path, stamp: str, meta: dict[str, Any], rows: list[Row], extra: str) -> Path:
    """bench/out/results-STAMP.{md,json}, and latest.{md,json} beside them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "rows": [asdict(row) | {"met": row.met} for row in rows]}
    markdown = _markdown(meta, rows, extra)
    for name in (f"results-{stamp}", "latest"):
        (out_dir / f"{name}.json").write_text(json.dumps(document, indent=2, ensure_ascii=False))
        (out_dir / f"{name}.md").write_text(markdown)
    return out_dir / f"results-{stamp}.md"


def _markdown(meta: dict[str, Any], rows: list[Row], extra: str) -> str:
    settings = ", ".join(f"{key}={value}" for key, value in meta.items())
    missed = failures(rows)
    verdict = (
        "all targets met"
        if not missed
        else "targets missed:\n" + "\n".join(f"- {line}" for line in missed)
    )
    return (
        f"Command: `{meta.get('command', 'make bench')}`\n\n{settings}\n\n"
        f"## Targets (c=8)\n\n{targets_markdown(rows)}\n\n"
        f"## Every row\n\n{markdown_table(rows)}\n\n{verdict}\n{extra}"
    )
