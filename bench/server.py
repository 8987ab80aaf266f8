"""gunicorn on 127.0.0.1, and what /proc tells of its workers and of PostgreSQL's backends."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.client import call

REPO = Path(__file__).resolve().parents[1]
GUNICORN = Path(sys.executable).parent / "gunicorn"
STARTUP_TIMEOUT = 30
STOP_TIMEOUT = 15
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class GunicornSettings:
    workers: int
    threads: int

    @property
    def label(self) -> str:
        return f"{self.workers}x{self.threads}"


@dataclass
class Server:
    """One gunicorn master and its workers."""

    app: str
    port: int
    process: subprocess.Popen
    log_path: Path

    def worker_pids(self) -> list[int]:
        return sorted(pid for pid, parent in _processes() if parent == self.process.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own process group
            self.process.wait(STOP_TIMEOUT)


def start(
    app: str, settings: GunicornSettings, env: dict[str, str], log_dir: Path, name: str
) -> Server:
    """gunicorn serving `app` (module:variable) once /healthz answers 200."""
    port = free_port()
    log_path = log_dir / f"gunicorn-{name}.log"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("EPU_")}
    environment.update(env)
    command = [
        str(GUNICORN),
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(settings.workers),
        "--worker-class", "gthread",
        "--threads", str(settings.threads),
        "--error-logfile", str(log_path),
        "--no-control-socket",
        app,
    ]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        command,
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Server(app, port, process, log_path)
    _wait_until_ready(server, settings.workers)
    return server


def _wait_until_ready(server: Server, workers: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn {server.app} exited:\n{server.log_tail()}")
        try:
            healthy = call(server.port, "GET", "/healthz").status == 200
        except OSError:
            healthy = False
        if healthy and len(server.worker_pids()) == workers:
            return
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"gunicorn {server.app} not ready after {STARTUP_TIMEOUT}s")


# ---- /proc ----------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _processes() -> list[tuple[int, int]]:
    """(pid, parent pid) of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            found.append((int(entry.name), int(fields[1])))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (those that have exited count nothing)."""
    total = 0
    for pid in pids:
        if fields := _stat_fields(pid):
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def backend_pids(database_name: str) -> list[int]:
    """PostgreSQL backends connected to this database (their title names it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres:") and f" {database_name} ".encode() in title:
            pids.append(int(entry.name))
    return pids


def machine_busy_seconds() -> float:
    """CPU seconds spent by the whole machine outside idle and iowait (all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(value) for value in fields[:8]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS
