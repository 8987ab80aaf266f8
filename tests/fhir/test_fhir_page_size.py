"""The worst page: whatever `_count`, a searchset stays under 2 MB (the next link goes on),
even with every text of every line at its maximum, in 3-byte characters."""

from datetime import timedelta

from sqlalchemy import select

from epu.codes import generate_code
from models import Client, Line, Prescription
from models.base import utcnow
from tests.fhir.support import resources

WIDE = "語"  # three bytes in UTF-8


def worst_prescription(prescriber_pk: int, lines: int) -> Prescription:
    now = utcnow()
    copies = [{"rpps": "10003092342", "name": WIDE * 200} for _ in range(10)]
    prescription = Prescription(
        code=generate_code(),
        status="active",
        prescriber_id=prescriber_pk,
        prescriber_rpps="10005688790",
        prescriber_name=WIDE * 200,
        patient_sex="female",
        patient_birth_date=(now - timedelta(days=20000)).date(),
        clinical_context=WIDE * 2000,
        result_return={"channels": ["mssante", "phone"], "phone": "0" * 30, "copies_to": copies},
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(days=365),
    )
    prescription.lines = [
        Line(
            line_id=f"L{n}",
            position=n,
            text=WIDE * 500,
            context=[{"code": "8665-2", "label": WIDE * 300, "value": WIDE * 200}] * 20,
            patient_instructions=["MED-1160"] * 10,
            sampling_instructions=WIDE * 1000,
            comment=WIDE * 1000,
        )
        for n in range(1, lines + 1)
    ]
    return prescription


def test_the_worst_page_stays_under_2_mb_and_the_next_link_goes_on(fhir, session, prescriber):
    from api.fhir.params import MAX_COUNT

    pk = session.scalar(select(Client.id).where(Client.client_id == prescriber.client_id))
    session.add_all([worst_prescription(pk, 50) for _ in range(5)])
    session.commit()
    response = fhir.get(f"/fhir/ServiceRequest?_count={MAX_COUNT}", prescriber)
    assert response.status_code == 200
    assert len(response.data) < 2_000_000
    first = resources(response.json)
    assert 0 < len(first) < MAX_COUNT  # cut by size, not by _count
    seen, page = [r["id"] for r in first], response.json
    while next_urls := [link["url"] for link in page["link"] if link["relation"] == "next"]:
        response = fhir.get(next_urls[0].removeprefix("http://localhost"), prescriber)
        assert len(response.data) < 2_000_000
        page = response.json
        seen += [r["id"] for r in resources(page)]
    assert len(seen) == len(set(seen)) == 250
