"""Use cases against a real session, without HTTP."""

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, update

from epu import catalogue, clients, history, laboratory, prescriptions
from epu.actors import Actor
from epu.audit import RepeatedReads
from epu.errors import PrescriptionNotFound, ValidationFailed
from epu.line_search import LineFilter, own_lines
from models import CatalogueVersion, Event, IdempotencyRecord, Line, Prescription
from models.base import utcnow
from tests.factories import prescription_body

KEY = b"k" * 32


def actor_for(session, role, identifier, name) -> Actor:
    client, _ = clients.create_client(session=session, role=role, identifier=identifier, name=name)
    return Actor(client.id, client.role, client.identifier, client.name)


@pytest.fixture
def doctor(session) -> Actor:
    return actor_for(session, "prescriber", "10005688790", "Dr Amélie Thomas")


@pytest.fixture
def laboratory_actor(session) -> Actor:
    return actor_for(session, "lab", "130000029", "Laboratoire des Calanques")


def new_prescription(session, doctor, **overrides) -> str:
    data = prescription_body(**overrides)
    data["patient"]["birth_date"] = date.fromisoformat(data["patient"]["birth_date"])
    created = prescriptions.create(
        session=session,
        actor=doctor,
        data=data,
        ins_key=KEY,
        validity_days=365,
        idempotency_key=None,
    )
    return created.body["code"]


def count(session, model) -> int:
    total = session.scalar(select(func.count()).select_from(model))
    session.rollback()
    return total


def test_validation_failure_leaves_nothing_behind(session, doctor):
    data = prescription_body(lines=[{"loinc": "2842-4"}])
    data["patient"]["birth_date"] = date(1969, 5, 1)
    with pytest.raises(ValidationFailed) as raised:
        prescriptions.create(
            session=session, actor=doctor, data=data, ins_key=KEY, validity_days=365
        )
    assert "lines[0].loinc" in raised.value.errors
    session.rollback()
    assert count(session, Prescription) == count(session, Event) == 0


def test_a_baby_born_after_midnight_somewhere_in_france_is_not_in_the_future(session, doctor):
    # At 23:30 UTC it is already tomorrow in Paris, and half a day later in Nouméa.
    tomorrow_in_noumea = (utcnow() + timedelta(hours=11)).date()
    data = prescription_body()
    data["patient"]["birth_date"] = tomorrow_in_noumea
    prescriptions.create(session=session, actor=doctor, data=data, ins_key=KEY, validity_days=365)
    data["patient"]["birth_date"] = utcnow().date() + timedelta(days=2)
    with pytest.raises(ValidationFailed) as raised:
        prescriptions.create(
            session=session, actor=doctor, data=data, ins_key=KEY, validity_days=365
        )
    assert raised.value.errors == {"patient.birth_date": "must not be in the future"}


def test_expire_marks_overdue_active_prescriptions_with_an_event(session, doctor, laboratory_actor):
    overdue, held, fresh = (new_prescription(session, doctor) for _ in range(3))
    laboratory.take(session=session, actor=laboratory_actor, code=held, ins_key=KEY)
    session.execute(
        update(Prescription)
        .where(Prescription.code.in_([overdue, held]))
        .values(expires_at=utcnow() - timedelta(days=1))
    )
    session.commit()
    assert history.expire_due(session=session) == 1
    statuses = dict(session.execute(select(Prescription.code, Prescription.status)).all())
    assert statuses == {overdue: "expired", held: "in_progress", fresh: "active"}
    expired_events = session.scalars(select(Event.type).where(Event.type == "expired")).all()
    assert expired_events == ["expired"]
    assert history.expire_due(session=session) == 0


def test_purge_deletes_old_closed_prescriptions_and_everything_attached(
    session, doctor, laboratory_actor
):
    old_cancelled = new_prescription(session, doctor)
    prescriptions.cancel(session=session, actor=doctor, code=old_cancelled, reason="x")
    old_active = new_prescription(session, doctor)
    old_held = new_prescription(session, doctor)
    laboratory.take(session=session, actor=laboratory_actor, code=old_held, ins_key=KEY)
    recent_cancelled = new_prescription(session, doctor)
    prescriptions.cancel(session=session, actor=doctor, code=recent_cancelled, reason="x")
    session.execute(
        update(Prescription)
        .where(Prescription.code.in_([old_cancelled, old_active, old_held]))
        .values(updated_at=utcnow() - timedelta(days=40))
    )
    session.commit()
    counts = history.purge(session=session, older_than_days=30, batch_size=1)
    assert counts["prescriptions"] == 1 and counts["lines"] == 3 and counts["events"] == 2
    remaining = set(session.scalars(select(Prescription.code)))
    assert remaining == {old_active, old_held, recent_cancelled}
    assert count(session, Line) == 9


def test_retention_commands_rest_after_each_full_batch(session, doctor):
    codes = [new_prescription(session, doctor) for _ in range(3)]
    session.execute(
        update(Prescription)
        .where(Prescription.code.in_(codes))
        .values(expires_at=utcnow() - timedelta(days=1))
    )
    session.commit()
    rests: list[float] = []
    pacer = history.Pacer(sleep=rests.append)
    assert history.expire_due(session=session, batch_size=2, pacer=pacer) == 3
    assert len(rests) == 1  # after the full batch; the last one, short, ends the command
    session.execute(update(Prescription).values(updated_at=utcnow() - timedelta(days=40)))
    session.commit()
    counts = history.purge(session=session, older_than_days=30, batch_size=2, pacer=pacer)
    assert counts["prescriptions"] == 3
    assert len(rests) == 2  # after its batch of two, not after its last of one


def test_a_pacer_rests_so_that_batches_keep_to_their_share_of_the_time():
    now, rests = [100.0], []
    pacer = history.Pacer(0.25, sleep=rests.append, clock=lambda: now[0])
    now[0] += 0.2  # a batch of 200 ms
    pacer.batch_done()
    now[0] += 0.04
    pacer.batch_done()
    assert rests == pytest.approx([0.6, 0.12])  # busy a quarter of the time


def test_catalogue_import_is_a_new_version_and_prescriptions_keep_their_labels(session, doctor):
    code = new_prescription(session, doctor, lines=[{"loinc": "57022-6"}])
    original = [entry.as_dict() for entry in catalogue.current(session).entries.values()]
    entries = [dict(entry) for entry in original]
    for entry in entries:
        if entry["loinc"] == "57022-6":
            entry["label"] = "Hémogramme (NFS) - libellé 2027"
    before = count(session, CatalogueVersion)
    catalogue.import_entries(session=session, entries=entries, source="test")
    assert count(session, CatalogueVersion) == before + 1
    assert catalogue.current(session).get("57022-6").label.startswith("Hémogramme (NFS)")
    body = prescriptions.read(session=session, actor=doctor, code=code)
    assert body["lines"][0]["label"] == "Numération formule sanguine"
    assert catalogue.load_bundled_if_empty(session=session) is None
    catalogue.import_entries(session=session, entries=original, source="restore")  # for later tests


def test_idempotency_records_follow_their_prescription(session, doctor):
    data = prescription_body()
    data["patient"]["birth_date"] = date(1969, 5, 1)
    first = prescriptions.create(
        session=session,
        actor=doctor,
        data=data,
        ins_key=KEY,
        validity_days=365,
        idempotency_key="k1",
    )
    again = prescriptions.create(
        session=session,
        actor=doctor,
        data=data,
        ins_key=KEY,
        validity_days=365,
        idempotency_key="k1",
    )
    assert again.replayed and again.body == first.body
    assert count(session, IdempotencyRecord) == 1


def test_a_laboratory_never_reads_what_it_does_not_hold(session, doctor, laboratory_actor):
    code = new_prescription(session, doctor)
    with pytest.raises(PrescriptionNotFound):
        prescriptions.read(session=session, actor=laboratory_actor, code=code)


def test_kept_views_stay_within_their_bytes():
    memory = prescriptions.ReadMemory(RepeatedReads(0), max_bytes=64 * 100)
    for n in range(150):  # 61 bytes each: about 100 fit
        memory.keep(("full", f"C{n}", 1, 1), {"text": "x" * 50})
    assert memory.view(("full", "C0", 1, 1)) is None  # the oldest went first
    assert memory.view(("full", "C149", 1, 1)) == {"text": "x" * 50}
    memory.keep(("full", "HUGE", 1, 1), {"text": "x" * 200})  # over 1/64 of the room: not kept
    assert memory.view(("full", "HUGE", 1, 1)) is None
    assert memory.view(("full", "C149", 1, 1)) is not None
    assert sum(memory.view(("full", f"C{n}", 1, 1)) is not None for n in range(150)) <= 105


def test_a_page_keeps_whole_only_the_prescriptions_whose_lines_fit_its_budget(session, doctor):
    """A page of N lines loads whole (and keeps) at most 2N lines of prescriptions it has not
    kept yet; a larger one is read for the page's lines only, and not kept."""
    code = new_prescription(session, doctor)  # 3 lines
    version = session.scalar(select(Prescription.version).where(Prescription.code == code))
    session.rollback()
    key = ("full", code, version, doctor.client_pk)
    memory = prescriptions.ReadMemory(RepeatedReads(0))

    page = own_lines(session=session, actor=doctor, where=LineFilter(), limit=1, memory=memory)
    assert [line["id"] for _, line, _ in page["items"]] == ["L1"]
    assert memory.view(key) is None  # 3 lines, a budget of 2

    page = own_lines(session=session, actor=doctor, where=LineFilter(), limit=2, memory=memory)
    assert [line["id"] for _, line, _ in page["items"]] == ["L1", "L2"]
    assert [line["id"] for line in memory.view(key)["lines"]] == ["L1", "L2", "L3"]


def test_a_page_shows_an_overdue_prescription_expired_and_keeps_its_stored_view(session, doctor):
    """Past its validity and not yet expired by `epu expire`, an active prescription is shown
    expired on every page, from the database or from the view the process keeps; the kept view
    stays that of the stored version (a page changes nothing)."""
    code = new_prescription(session, doctor)
    session.execute(
        update(Prescription)
        .where(Prescription.code == code)
        .values(expires_at=utcnow() - timedelta(days=1))
    )
    session.commit()
    version = session.scalar(select(Prescription.version).where(Prescription.code == code))
    session.rollback()
    memory = prescriptions.ReadMemory(RepeatedReads(0))

    for _ in range(2):  # loaded, then kept
        page = own_lines(session=session, actor=doctor, where=LineFilter(), limit=3, memory=memory)
        assert {view["status"] for view, _, _ in page["items"]} == {"expired"}
    assert memory.view(("full", code, version, doctor.client_pk))["status"] == "active"
    assert session.scalar(select(Prescription.status).where(Prescription.code == code)) == "active"
