"""Optional: py-spy on the gunicorn workers during an extra c=8 pass of each PROFILED scenario.

BENCH_PROFILE=1 (or gil) samples only the thread holding the GIL: where the workers' Python CPU
goes, undisturbed by threads that wait for a core on a busy machine. BENCH_PROFILE=wall samples
every thread, idle ones included: where a request's wall time goes (database waits too).

py-spy is not a dependency of EPU: `.venv/bin/pip install py-spy` first. Each profiled
scenario leaves bench/out/profile-NAME.txt (collapsed stacks, for flamegraph tools) and
profile-NAME-top.txt (the top functions, by own and by inclusive CPU time, and by library).
"""

import math
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.server import Server

PROFILED = (
    "create", "fhir_create", "scan", "status_304", "read", "fhir_read", "fhir_search", "fhir_page",
    "patient_lookup", "propose", "accept",
)  # fmt: skip
RATE = 200  # samples per second
PROJECT = ("epu/", "api/", "models/", "qr/")
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


class Profiler:
    def __init__(self, executable: str, gunicorn: Server, out: Path, mode: str):
        self.executable, self.gunicorn, self.out = executable, gunicorn, out
        self.mode_option = "--idle" if mode == "wall" else "--gil"
        self.process: subprocess.Popen | None = None
        self.name = ""

    @classmethod
    def maybe(cls, mode: str, gunicorn: Server, out: Path) -> "Profiler | None":
        if mode in ("", "0"):
            return None
        bin_dir = str(Path(sys.executable).parent)
        executable = shutil.which("py-spy", path=bin_dir) or shutil.which("py-spy")
        if executable is None:
            print("[bench] BENCH_PROFILE: py-spy not found (.venv/bin/pip install py-spy)")
            return None
        return cls(executable, gunicorn, out, mode)

    def start(self, name: str, seconds: float) -> None:
        if name not in PROFILED:
            return
        self.name = name
        self.process = subprocess.Popen(  # noqa: S603 (fixed arguments)
            [
                self.executable, "record",
                "--pid", str(self.gunicorn.process.pid), "--subprocesses",
                "--rate", str(RATE), "--format", "raw", self.mode_option,
                "--duration", str(math.ceil(seconds)),
                "--output", str(self.out / f"profile-{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def finish(self) -> None:
        if self.process is None:
            return
        self.process.wait(60)
        self.process = None
        raw = self.out / f"profile-{self.name}.txt"
        if raw.exists():
            (self.out / f"profile-{self.name}-top.txt").write_text(summarise(raw.read_text()))


def _frame(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return match["function"], match["file"]


def library(file: str) -> str:
    """The package a frame belongs to: 'sqlalchemy', 'flask', 'epu', or a stdlib module."""
    parts = file.replace("\\", "/").split("/")
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].removesuffix(".py")
    return parts[0].removesuffix(".py") if parts else file


def summarise(collapsed: str, top: int = 30) -> str:
    own: Counter = Counter()
    inclusive: Counter = Counter()
    project: Counter = Counter()
    libraries: Counter = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        total += count
        function, file = frames[-1]
        own[f"{function} ({file})"] += count
        libraries[library(file)] += count
        for name in {f"{fn} ({fl})" for fn, fl in frames}:
            inclusive[name] += count
        for name in {f"{fn} ({fl})" for fn, fl in frames if fl.startswith(PROJECT)}:
            project[name] += count
    if not total:
        return "no samples\n"

    def table(title: str, counter: Counter, limit: int) -> str:
        lines = [f"{title} ({total} samples)"]
        lines += [f"{n / total:6.1%}  {name}" for name, n in counter.most_common(limit)]
        return "\n".join(lines)

    return (
        "\n\n".join(
            [
                table("CPU by library (own time of the innermost frame)", libraries, 20),
                table("Inclusive time in EPU's own code", project, top),
                table("Own time by function", own, top),
                table("Inclusive time by function", inclusive, top * 2),
            ]
        )
        + "\n"
    )
