"""The `epu` command, run as a real process on the test database, checked against a server."""

import json
import os
import sqlite3
import stat
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from epu import catalogue
from models import Client, Event, IdempotencyRecord, Line, Prescription
from models.base import utcnow
from tests.e2e.support import EPU, REPO, request_token
from tests.factories import PROLACTIN

pytestmark = pytest.mark.slow


def run_epu(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EPU_")}
    environment.update(env)
    return subprocess.run(
        [str(EPU), *args],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )


@pytest.fixture
def epu(settings, tmp_path, clean_database):
    """epu("clients", "list") -> CompletedProcess, on the test database."""
    env = {
        "EPU_DATABASE_URL": settings.database_url,
        "EPU_SECRET_KEY": settings.secret_key,
        "EPU_INSTANCE_DIR": str(tmp_path / "instance"),  # never the repository's instance/
    }
    return lambda *args: run_epu(*args, env=env)


def assert_refused(result: subprocess.CompletedProcess, *expected: str) -> None:
    """Exit status 2, nothing on stdout, and a message on stderr that names the problem."""
    assert result.returncode == 2, result
    assert result.stdout == ""
    for text in expected:
        assert text in result.stderr, result.stderr


def count(session_factory, model, *where) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


# ---- clients --------------------------------------------------------------------------------


def test_clients_create_prints_one_json_object_whose_secret_works(epu, server):
    result = epu(
        "clients",
        "create",
        "--role",
        "prescriber",
        "--rpps",
        "10005688790",
        "--name",
        "Dr Amélie Thomas",
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    created = json.loads(lines[0])
    assert set(created) == {"client_id", "client_secret", "role", "identifier"}
    assert (created["role"], created["identifier"]) == ("prescriber", "10005688790")
    response = request_token(server, created["client_id"], created["client_secret"])
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"


@pytest.mark.parametrize(
    ("arguments", "mentioned"),
    [
        (["--role", "prescriber", "--rpps", "10005688791"], "10005688791"),  # wrong Luhn key
        (["--role", "prescriber", "--rpps", "1000568879"], "1000568879"),  # 10 digits
        (["--role", "lab", "--finess", "130000028"], "130000028"),  # wrong Luhn key
        (["--role", "prescriber", "--finess", "130000029"], "--finess"),
        (["--role", "prescriber", "--rpps", "10005688790", "--finess", "130000029"], "--finess"),
    ],
    ids=["rpps-luhn", "rpps-length", "finess-luhn", "finess-for-prescriber", "both-identifiers"],
)
def test_clients_create_refuses_bad_identifiers(epu, session_factory, arguments, mentioned):
    result = epu("clients", "create", *arguments, "--name", "Dr Amélie Thomas")

    assert_refused(result, "error: ", mentioned)
    assert count(session_factory, Client) == 0


def test_clients_list_never_shows_secrets(epu):
    created = [
        json.loads(epu("clients", "create", *args, "--name", "Client").stdout)
        for args in (
            ["--role", "prescriber", "--rpps", "10005688790"],
            ["--role", "lab", "--finess", "130000029"],
        )
    ]

    result = epu("clients", "list")

    assert result.returncode == 0, result.stderr
    listed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [c["client_id"] for c in listed] == [c["client_id"] for c in created]
    for client in created:
        assert client["client_secret"] not in result.stdout
    assert not any("secret" in key for item in listed for key in item)


def test_clients_revoke_refuses_an_existing_token_within_a_second_on_every_instance(
    epu, server, server_b, register
):
    lab = register(server, "lab")
    for instance in (server, server_b):  # each one has now verified and cached the token
        for _ in range(4):  # and, likely, every worker has checked and cached the client
            assert instance.get(f"/api/v1/catalogue/{PROLACTIN}", headers=lab.headers).ok

    result = epu("clients", "revoke", lab.client_id)
    time.sleep(1.0)  # the promise: refused everywhere within 1 s (EPU_REVOCATION_CHECK_SECONDS)

    assert result.returncode == 0, result.stderr
    for instance in (server, server_b):
        refused = instance.get(f"/api/v1/catalogue/{PROLACTIN}", headers=lab.headers)
        assert refused.status_code == 401, refused.text
    assert request_token(server, lab.client_id, lab.secret).status_code in (400, 401)
    assert_refused(epu("clients", "revoke", "epu-lab-unknown"), "epu-lab-unknown")


# ---- database and catalogue -----------------------------------------------------------------


def test_db_upgrade_is_idempotent(epu, server):
    for _ in range(2):
        result = epu("db", "upgrade")
        assert result.returncode == 0, result.stderr

    ready = server.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["migrations"] == "at head"


def current_version(session_factory) -> int | None:
    with session_factory() as session:
        return catalogue.current_version_id(session, fresh=True)


def current_entries(session_factory) -> dict[str, dict]:
    with session_factory() as session:
        entries = catalogue.current(session, fresh=True).entries
        session.rollback()
    return {loinc: entry.as_dict() for loinc, entry in entries.items()}


def test_catalogue_export_then_import_creates_a_new_version(epu, session_factory, tmp_path):
    before, entries = current_version(session_factory), current_entries(session_factory)

    exported = epu("catalogue", "export", "--format", "fhir")

    assert exported.returncode == 0, exported.stderr
    resource = json.loads(exported.stdout)
    assert resource["resourceType"] == "CodeSystem"
    assert len(resource["concept"]) >= 150
    path = tmp_path / "catalogue.json"
    path.write_text(exported.stdout, encoding="utf-8")
    imported = epu("catalogue", "import", str(path))
    assert imported.returncode == 0, imported.stderr
    assert current_version(session_factory) == before + 1
    assert f"catalogue version {before + 1}: {len(resource['concept'])} entries" in imported.stdout
    assert current_entries(session_factory) == entries  # the round trip loses nothing


def test_catalogue_import_refuses_a_bad_loinc_check_digit_and_keeps_the_catalogue(
    epu, server, register, session_factory, tmp_path
):
    lab = register(server, "lab")
    before = server.get(f"/api/v1/catalogue/{PROLACTIN}", headers=lab.headers).json()
    version = current_version(session_factory)
    path = tmp_path / "bad.csv"
    path.write_text("loinc,label\n718-7,Hémoglobine\n2842-4,Prolactine\n", encoding="utf-8")

    result = epu("catalogue", "import", str(path))

    assert_refused(result, "line 3", "2842-4", "check digit")
    assert current_version(session_factory) == version
    after = server.get(f"/api/v1/catalogue/{PROLACTIN}", headers=lab.headers)
    assert after.status_code == 200
    assert after.json() == before


# ---- retention ------------------------------------------------------------------------------


def test_expire_marks_an_overdue_active_prescription_expired(
    epu, server, register, create_prescription, session
):
    prescriber = register(server, "prescriber")
    code = create_prescription(server, prescriber)["code"]
    session.execute(
        update(Prescription)
        .where(Prescription.code == code)
        .values(expires_at=utcnow() - timedelta(minutes=1))
    )
    session.commit()

    result = epu("expire")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "expired 1 prescriptions"
    prescription = session.scalar(select(Prescription).where(Prescription.code == code))
    events = session.scalars(select(Event.type).where(Event.prescription_id == prescription.id))
    assert (prescription.status, list(events)) == ("expired", ["created", "expired"])
    session.rollback()  # never keep a transaction open: SQLite would lock the server out
    status = server.get(f"/api/v1/prescriptions/{code}/status", headers=prescriber.headers)
    assert status.json()["status"] == "expired"


def test_purge_deletes_old_closed_prescriptions_only(
    epu, server, register, create_prescription, session
):
    prescriber, lab = register(server, "prescriber"), register(server, "lab")
    cancelled = create_prescription(server, prescriber, headers={"Idempotency-Key": "k-1"})["code"]
    active = create_prescription(server, prescriber)["code"]
    in_progress = create_prescription(server, prescriber)["code"]
    recently_cancelled = create_prescription(server, prescriber)["code"]
    for code in (cancelled, recently_cancelled):
        response = server.post(
            f"/api/v1/prescriptions/{code}/cancel", json={"reason": "x"}, headers=prescriber.headers
        )
        assert response.status_code == 200, response.text
    assert server.post("/api/v1/scans", json={"code": in_progress}, headers=lab.headers).ok
    session.execute(
        update(Prescription)
        .where(Prescription.code.in_([cancelled, active, in_progress]))
        .values(updated_at=utcnow() - timedelta(days=40))
    )
    session.commit()
    purged_id = session.scalar(select(Prescription.id).where(Prescription.code == cancelled))
    session.rollback()

    result = epu("purge", "--older-than", "30")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "prescriptions": 1,
        "lines": 3,
        "events": 2,  # created, cancelled
        "idempotency_records": 1,
    }
    remaining = set(session.scalars(select(Prescription.code)))
    assert remaining == {active, in_progress, recently_cancelled}
    for model in (Line, Event, IdempotencyRecord):
        assert (
            session.scalar(
                select(func.count()).select_from(model).where(model.prescription_id == purged_id)
            )
            == 0
        )
    session.rollback()


# ---- first start (make run) -----------------------------------------------------------------


def test_first_start_creates_the_embedded_database_secret_and_catalogue(tmp_path):
    instance = tmp_path / "instance"
    env = {"EPU_INSTANCE_DIR": str(instance)}  # no EPU_DATABASE_URL, no EPU_SECRET_KEY

    upgraded = run_epu("db", "upgrade", env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (instance / "epu.db").is_file()
    secret = instance / "secret_key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    generated = secret.read_text().strip()
    assert len(generated) >= 32

    loaded = run_epu("catalogue", "load-bundled", env=env, cwd=tmp_path)
    again = run_epu("catalogue", "load-bundled", env=env, cwd=tmp_path)

    assert (loaded.returncode, again.returncode) == (0, 0), (loaded.stderr, again.stderr)
    assert loaded.stdout.strip() == "loaded the starter catalogue as version 1"
    assert again.stdout.strip() == "catalogue already present"
    assert secret.read_text().strip() == generated
    with sqlite3.connect(instance / "epu.db") as database:
        assert database.execute("SELECT count(*) FROM catalogue_versions").fetchone() == (1,)
        assert database.execute("SELECT count(*) FROM catalogue_entries").fetchone()[0] >= 150
    database.close()
