"""Searching ServiceRequests never widens silently: every parameter EPU does not apply is
refused, the INS never travels in a URL, and the filters clients need work (patient, _id,
code, OR values, date prefixes in Europe/Paris days); paging and counting by entries."""

from datetime import UTC, datetime
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from sqlalchemy import select

from models import Event, Prescription
from tests.factories import BLOOD_COUNT, OTHER_INS, PROLACTIN, VALID_INS, prescription_body
from tests.fhir.support import EPU_OID, INS_OID, LOINC, resources

FORM = "application/x-www-form-urlencoded"


def create(http, party, ins=VALID_INS, **overrides) -> str:
    body = prescription_body(**overrides)
    body["patient"]["ins"] = ins
    response = http.post("/api/v1/prescriptions", json=body, headers=party.headers)
    assert response.status_code == 201, response.json
    return response.json["code"]


def post_search(fhir, party, headers=None, **form):
    return fhir.post(
        "/fhir/ServiceRequest/_search",
        party,
        data=urlencode(form, doseq=True),
        headers={"Content-Type": FORM, **(headers or {})},
    )


def ids(bundle: dict) -> list[str]:
    return [resource["id"] for resource in resources(bundle)]


def all_pages(fhir, party, first: dict) -> list[str]:
    seen, page = ids(first), first
    while True:
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        if url is None:
            return seen
        assert VALID_INS not in url and OTHER_INS not in url
        response = fhir.get(url.removeprefix("http://localhost"), party)
        assert response.status_code == 200, response.json
        page = response.json
        seen += ids(page)


@pytest.mark.parametrize(
    "query",
    [
        "subject=Patient/1",
        "patient=Patient/1",
        "identifier=urn:x|1",
        "status:not=active",
        "status:missing=true",
        "code:text=glycemie",
        "_has:Observation:based-on:code=1",
        "_sort=-_lastUpdated",
        "_lastUpdated=ap2026-01-01",
        "requisition:above=x",
    ],
)
def test_a_parameter_epu_does_not_apply_is_refused_and_named(fhir, http, prescriber, query):
    create(http, prescriber)
    response = fhir.get(f"/fhir/ServiceRequest?{query}", prescriber)
    assert response.status_code == 400, query
    issue = response.json["issue"][0]
    assert issue["code"] == "not-supported"
    assert issue["expression"] == [query.split("=")[0]]
    lenient = fhir.get(
        f"/fhir/ServiceRequest?{query}", prescriber, headers={"Prefer": "handling=lenient"}
    )
    assert lenient.status_code == 200
    assert query.split("=")[0] not in lenient.json["link"][0]["url"]


@pytest.mark.parametrize(
    "query",
    [
        f"subject:identifier={INS_OID}|{VALID_INS}",
        f"patient.identifier={INS_OID}|{VALID_INS}",
        f"subject.identifier={VALID_INS}",
        f"patient:identifier={VALID_INS}",
        f"code={VALID_INS}",
        f"requisition=urn:oid:1.2.250.1.213.1.4.10|{VALID_INS}",
    ],
)
def test_an_ins_in_a_url_is_refused_and_points_to_post_search(fhir, prescriber, lab, query):
    for party in (prescriber, lab):
        for path in ("/fhir/ServiceRequest", "/fhir/ServiceRequest/_search"):
            response = fhir.request(
                "GET" if path.endswith("Request") else "POST", f"{path}?{query}", party
            )
            assert response.status_code == 400, (query, path)
            issue = response.json["issue"][0]
            assert issue["code"] == "security"
            assert "POST /fhir/ServiceRequest/_search" in issue["diagnostics"]
            assert VALID_INS not in response.get_data(as_text=True)


def test_post_search_gives_a_prescriber_its_own_prescriptions_of_a_patient(
    fhir, http, prescriber, other_prescriber
):
    mine = [create(http, prescriber) for _ in range(2)]
    create(http, prescriber, ins=OTHER_INS)
    create(http, other_prescriber)  # the same patient, another prescriber's
    for name in ("patient.identifier", "subject:identifier", "patient:identifier"):
        response = post_search(fhir, prescriber, **{name: f"{INS_OID}|{VALID_INS}"})
        assert response.status_code == 200, response.json
        assert sorted(ids(response.json)) == sorted(
            f"{code}-L{n}" for code in mine for n in (1, 2, 3)
        )
    first = post_search(fhir, prescriber, **{"patient.identifier": f"{INS_OID}|{VALID_INS}"})
    paged = post_search(
        fhir,
        prescriber,
        **{"patient.identifier": f"{INS_OID}|{VALID_INS}", "_count": "4", "code": BLOOD_COUNT},
    )
    assert ids(paged.json) == [f"{code}-L1" for code in mine]
    one_by_one = post_search(
        fhir, prescriber, **{"patient.identifier": f"{INS_OID}|{VALID_INS}", "_count": "1"}
    )
    assert sorted(all_pages(fhir, prescriber, one_by_one.json)) == sorted(ids(first.json))
    assert "next" not in str(first.json["link"])
    by_requisition = post_search(
        fhir,
        prescriber,
        **{"patient.identifier": f"{INS_OID}|{OTHER_INS}", "requisition": mine[0]},
    )
    assert ids(by_requisition.json) == []  # that prescription is for another patient


def test_post_search_refuses_an_nia_and_a_bad_ins(fhir, prescriber):
    nia = post_search(
        fhir, prescriber, **{"patient.identifier": f"urn:oid:1.2.250.1.213.1.4.9|{VALID_INS}"}
    )
    assert nia.status_code == 400
    assert "NIA" in nia.json["issue"][0]["diagnostics"]
    wrong_key = post_search(
        fhir, prescriber, **{"patient.identifier": f"{INS_OID}|269052A12345600"}
    )
    assert wrong_key.status_code == 400


def test_search_by_id_one_or_several(fhir, http, prescriber, other_prescriber):
    first, second = create(http, prescriber), create(http, prescriber)
    theirs = create(http, other_prescriber)
    one = fhir.get(f"/fhir/ServiceRequest?_id={first}-L2", prescriber).json
    assert ids(one) == [f"{first}-L2"]
    several = fhir.get(
        f"/fhir/ServiceRequest?_id={first}-L1,{second}-L3,{theirs}-L1", prescriber
    ).json
    assert sorted(ids(several)) == sorted([f"{first}-L1", f"{second}-L3"])
    both = fhir.get(
        f"/fhir/ServiceRequest?_id={first}-L1,{first}-L2&_id={first}-L2", prescriber
    ).json
    assert ids(both) == [f"{first}-L2"]  # repetitions AND, commas OR


def test_search_by_code_with_system_and_or_values(fhir, http, prescriber):
    code = create(http, prescriber)
    for value in (BLOOD_COUNT, f"{LOINC}|{BLOOD_COUNT}", f"|{BLOOD_COUNT}"):
        found = fhir.get(f"/fhir/ServiceRequest?code={quote(value)}", prescriber).json
        assert ids(found) == [f"{code}-L1"], value
    either = fhir.get(f"/fhir/ServiceRequest?code={BLOOD_COUNT},{PROLACTIN}", prescriber).json
    assert ids(either) == [f"{code}-L1", f"{code}-L2"]
    other_system = fhir.get(f"/fhir/ServiceRequest?code=urn:x|{BLOOD_COUNT}", prescriber).json
    assert ids(other_system) == []
    with_requisition = fhir.get(
        f"/fhir/ServiceRequest?requisition={code}&code={PROLACTIN}", prescriber
    ).json
    assert ids(with_requisition) == [f"{code}-L2"]


def test_status_takes_or_values_and_requisition_too(fhir, http, prescriber):
    first, second = create(http, prescriber), create(http, prescriber)
    found = fhir.get(
        f"/fhir/ServiceRequest?requisition={first},{quote(EPU_OID)}|{second}&status=active",
        prescriber,
    ).json
    assert len(ids(found)) == 6


def test_date_prefixes_with_and_without_zone_read_days_in_paris(fhir, http, session, prescriber):
    code = create(http, prescriber)
    stored = session.scalar(select(Prescription).where(Prescription.code == code))
    stored.updated_at = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)  # 11 March, 00:30 in Paris
    session.commit()
    expectations = {
        "2026-03-11": True,
        "2026-03-10": False,
        "eq2026-03": True,
        "2026": True,
        "ne2026-03-11": False,
        "ne2026-03-10": True,
        "sa2026-03-10": True,
        "gt2026-03-11": False,
        "eb2026-03-12": True,
        "lt2026-03-11": False,
        "le2026-03-11": True,
        "ge2026-03-11T00:30": True,
        "gt2026-03-11T00:30": False,
        "2026-03-10T23:30:00Z": True,
        "2026-03-11T00:30:00+01:00": True,
        "lt2026-03-11T00:30:00+01:00": False,
        "lt2026-03-11T00:31:00": True,
    }
    for value, matches in expectations.items():
        found = fhir.get(f"/fhir/ServiceRequest?_lastUpdated={quote(value)}", prescriber)
        assert found.status_code == 200, (value, found.json)
        assert bool(ids(found.json)) is matches, value
    either = fhir.get("/fhir/ServiceRequest?_lastUpdated=2026-01-01,2026-03-11", prescriber)
    assert len(ids(either.json)) == 3


# ---- paging and counting ---------------------------------------------------------------------


def test_count_counts_entries_and_next_goes_on_inside_a_prescription(fhir, http, prescriber):
    codes = [create(http, prescriber) for _ in range(2)]
    first = fhir.get("/fhir/ServiceRequest?_count=2", prescriber).json
    assert ids(first) == [f"{codes[0]}-L1", f"{codes[0]}-L2"]
    assert all_pages(fhir, prescriber, first) == [
        f"{code}-L{n}" for code in codes for n in (1, 2, 3)
    ]
    by_requisition = fhir.get(f"/fhir/ServiceRequest?requisition={codes[0]}&_count=1", prescriber)
    assert all_pages(fhir, prescriber, by_requisition.json) == [
        f"{codes[0]}-L{n}" for n in (1, 2, 3)
    ]


def test_count_zero_and_summary_count_answer_the_total_only(fhir, http, prescriber):
    create(http, prescriber)
    create(http, prescriber)
    for query in ("_count=0", "_summary=count", "_summary=count&_totalMethod=count"):
        bundle = fhir.get(f"/fhir/ServiceRequest?{query}", prescriber).json
        assert bundle["total"] == 6, query
        assert "entry" not in bundle
    counted = fhir.get("/fhir/ServiceRequest?_summary=count&code=" + BLOOD_COUNT, prescriber)
    assert counted.json["total"] == 2


def test_total_accurate_fills_the_total_on_every_page(fhir, http, prescriber):
    create(http, prescriber)
    for total in ("accurate", "estimate"):
        page = fhir.get(f"/fhir/ServiceRequest?_count=1&_total={total}", prescriber).json
        assert page["total"] == 3 and len(page["entry"]) == 1
    assert "total" not in fhir.get("/fhir/ServiceRequest?_count=1", prescriber).json


def test_elements_subsets_and_marks_the_result(fhir, http, prescriber):
    code = create(http, prescriber)
    bundle = fhir.get(f"/fhir/ServiceRequest?requisition={code}&_elements=code", prescriber).json
    for resource in resources(bundle):
        assert "code" in resource and "requester" not in resource
        assert {"status", "intent", "subject"} <= set(resource)
        assert any(tag["code"] == "SUBSETTED" for tag in resource["meta"]["tag"])


@pytest.mark.parametrize("summary", ["true", "text", "data"])
def test_summary_other_than_count_is_refused_not_ignored(fhir, prescriber, summary):
    response = fhir.get(f"/fhir/ServiceRequest?_summary={summary}", prescriber)
    assert response.status_code == 400
    assert response.json["issue"][0]["expression"] == ["_summary"]


def test_count_above_the_cap_gives_a_page_of_the_cap(fhir, http, prescriber):
    from api.fhir.params import MAX_COUNT

    create(http, prescriber)
    bundle = fhir.get(f"/fhir/ServiceRequest?_count={MAX_COUNT * 10}", prescriber).json
    assert len(bundle["entry"]) == 3
    query = parse_qs(urlsplit(bundle["link"][0]["url"]).query)
    assert query["_count"] == [str(MAX_COUNT)]


def test_a_cursor_is_for_its_client_only(fhir, http, prescriber, other_prescriber):
    create(http, prescriber)
    page = fhir.get("/fhir/ServiceRequest?_count=1", prescriber).json
    url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    response = fhir.get(url.removeprefix("http://localhost"), other_prescriber)
    assert response.status_code == 400


# ---- laboratories and nurses: the patient lookup ---------------------------------------------


def lookup(fhir, party, birth="1969-05-01", presence="carte_vitale", **extra):
    return post_search(
        fhir,
        party,
        **{
            "patient.identifier": f"{INS_OID}|{VALID_INS}",
            "patient.birthdate": birth,
            "presence": presence,
            **extra,
        },
    )


def test_laboratories_search_a_patient_by_the_lookup_rules(fhir, http, session, prescriber, lab):
    codes = [create(http, prescriber) for _ in range(2)]
    create(http, prescriber, ins=OTHER_INS)
    found = lookup(fhir, lab)
    assert found.status_code == 200, found.json
    assert sorted(ids(found.json)) == sorted(f"{c}-L{n}" for c in codes for n in (1, 2, 3))
    paged = lookup(fhir, lab, _count="2")
    assert sorted(all_pages(fhir, lab, paged.json)) == sorted(ids(found.json))
    assert ids(lookup(fhir, lab, birth="1970-01-01").json) == []  # as a patient with none
    looked_up = session.scalars(select(Event.type).where(Event.type == "patient_lookup")).all()
    assert len(looked_up) >= 3  # each page is an audited lookup


def test_a_lookup_needs_its_birth_date_and_presence(fhir, lab):
    missing = post_search(fhir, lab, **{"patient.identifier": f"{INS_OID}|{VALID_INS}"})
    assert missing.status_code == 400
    assert "patient.birthdate" in missing.json["issue"][0]["diagnostics"]
    wrong = lookup(fhir, lab, presence="telepathy")
    assert wrong.status_code == 400
