"""Node's fhir-kit-client (pinned in tests/fhir/node/package.json), unmodified, against a real
server: transaction, read, search with every page, count, the laboratory's operations.

Skipped only when node is absent; `npm ci` installs the pinned client on first run."""

import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.fhir.support import transaction_bundle

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture
def live_server(app, http):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/fhir"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def fhir_kit_client() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node (and npm) are not installed: the Node client test cannot run")
    if not (NODE_DIR / "node_modules" / "fhir-kit-client").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            check=True,
            timeout=300,
        )
    return Path(node)


def test_fhir_kit_client_follows_a_prescription(fhir_kit_client, live_server, prescriber, lab):
    done = subprocess.run(
        [
            str(fhir_kit_client),
            str(NODE_DIR / "scenario.mjs"),
            live_server,
            prescriber.token,
            lab.token,
            json.dumps(transaction_bundle()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    code = seen["code"]
    assert seen["fhirVersion"] == "4.0.1"
    assert seen["statuses"] == ["201 Created"] * 3
    assert seen["readId"] == f"{code}-L1"
    assert seen["pagedIds"] == [f"{code}-L{n}" for n in (1, 2, 3)]
    assert seen["total"] == 1
    assert seen["takenStatus"] == "in-progress"
    assert seen["releasedStatus"] == "requested"
    assert seen["refused"] == 400
