"""Real servers and HTTP parties for the end-to-end tests (plain helpers; fixtures in conftest)."""

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GUNICORN = BIN / "gunicorn"
EPU = BIN / "epu"
STARTUP_TIMEOUT = 20
STOP_TIMEOUT = 10
REQUEST_TIMEOUT = 30
REDIS_DB = int(os.environ.get("EPU_TEST_REDIS_DB", "15"))  # distinct per concurrent run
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"

PRESCRIBER_RPPS = "10005688790"
LAB_FINESS = "130000029"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """One gunicorn master (and its workers) serving wsgi:app on 127.0.0.1."""

    name: str
    url: str
    process: subprocess.Popen
    log_path: Path

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        return requests.request(method, self.url + path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def worker_pids(self) -> set[int]:
        """The master's children, read from /proc."""
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                after_name = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(after_name[1]) == self.process.pid:
                pids.add(int(stat.parent.name))
        return pids

    def wait_until_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn {self.name} exited with {self.process.returncode}:\n"
                    + self.log_tail()
                )
            try:
                if self.get("/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gunicorn {self.name} not healthy after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                # Its own process group (start_new_session): the master and its workers.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT)


def start_gunicorn(
    name: str,
    *,
    database_url: str,
    secret_key: str,
    instance_dir: Path,
    workers: int = 2,
    env: dict[str, str] | None = None,
    attempts: int = 3,
) -> Server:
    """gunicorn serving wsgi:app on a free port, once /healthz answers; retried on another port
    if the one picked was taken in the meantime."""
    instance_dir.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EPU_")}
    environment.update(
        EPU_DATABASE_URL=database_url,
        EPU_SECRET_KEY=secret_key,
        EPU_INSTANCE_DIR=str(instance_dir),
        **(env or {}),
    )
    for attempt in range(1, attempts + 1):
        port = free_port()
        log_path = instance_dir / f"gunicorn-{port}.log"
        command = [
            str(GUNICORN),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            # gunicorn >= 25 opens a control socket, by default ~/.gunicorn/gunicorn.ctl for
            # every instance of the user: the tests neither need it nor want them to share it.
            "--no-control-socket",
            "wsgi:app",
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(name, f"http://127.0.0.1:{port}", process, log_path)
        try:
            server.wait_until_healthy()
        except RuntimeError:
            server.stop()
            if attempt == attempts or "Address already in use" not in server.log_tail():
                raise
            continue
        return server
    raise AssertionError("unreachable")


@dataclass
class ServerPool:
    """Starts instances on the test database and stops them all at once."""

    database_url: str
    secret_key: str
    base_dir: Path
    servers: list[Server] = field(default_factory=list)
    redis_flushed: bool = False

    def start(
        self,
        name: str = "a",
        *,
        workers: int = 2,
        redis: bool = False,
        env: dict[str, str] | None = None,
    ) -> Server:
        env = dict(env or {})
        if redis:
            self._fresh_redis()
            env["EPU_REDIS_URL"] = REDIS_URL
        server = start_gunicorn(
            name,
            database_url=self.database_url,
            secret_key=self.secret_key,
            instance_dir=self.base_dir / f"{name}-{len(self.servers)}",
            workers=workers,
            env=env,
        )
        self.servers.append(server)
        return server

    def _fresh_redis(self) -> None:
        """Redis db REDIS_DB, emptied once per pool: no counter survives from another test."""
        if self.redis_flushed:
            return
        import redis

        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).flushdb()
        except redis.RedisError as error:
            message = f"Redis is unreachable at {REDIS_URL} ({error})"
            if os.environ.get("CI"):
                pytest.fail(f"{message}: CI needs it for the shared-limits tests")
            pytest.skip(f"{message}: start redis-server to test limits shared between instances")
        self.redis_flushed = True

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()


# ---- parties and prescriptions --------------------------------------------------------------


@dataclass
class Party:
    """A registered client software with a bearer token obtained from a real server."""

    role: str
    client_id: str
    secret: str
    identifier: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def basic_auth(client_id: str, secret: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


def request_token(server: Server, client_id: str, secret: str) -> requests.Response:
    return server.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic_auth(client_id, secret),
    )


def token_for(server: Server, client_id: str, secret: str) -> str:
    response = request_token(server, client_id, secret)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def problem_code(response: requests.Response) -> str | None:
    """The problem+json "code" of a refusal (None for a success or a non-problem body)."""
    if response.status_code < 400:
        return None
    try:
        return response.json().get("code")
    except ValueError:
        return None
