import pytest


def search(http, party, query):
    response = http.get(f"/api/v1/catalogue?{query}", headers=party.headers)
    assert response.status_code == 200, response.json
    return [item["loinc"] for item in response.json["items"]]


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("q=nfs", "57022-6"),
        ("q=NFS", "57022-6"),
        ("q=hemogramme", "57022-6"),
        ("q=Hémogramme", "57022-6"),
        ("q=prolac", "2842-3"),
        ("q=PRL", "2842-3"),
        ("q=2842-3", "2842-3"),
        ("q=numeration%20formule", "57022-6"),
    ],
)
def test_search_puts_the_best_match_first(http, prescriber, query, first):
    assert search(http, prescriber, query)[0] == first


def test_search_entries_have_the_documented_shape(http, lab):
    response = http.get("/api/v1/catalogue?q=prolactine", headers=lab.headers)
    entry = response.json["items"][0]
    assert entry == {
        "loinc": "2842-3",
        "label": "Prolactine",
        "synonyms": entry["synonyms"],
        "required_context": [
            {"code": "8665-2", "label": "Date des dernières règles", "type": "date"}
        ],
        "patient_instructions": entry["patient_instructions"],
        "specimen": "SER",
    }
    assert "PRL" in entry["synonyms"]


def test_limit_bounds_results(http, prescriber):
    assert len(search(http, prescriber, "q=&limit=5")) == 5
    assert search(http, prescriber, "q=zzzzzz") == []
    response = http.get("/api/v1/catalogue?limit=101", headers=prescriber.headers)
    assert response.status_code == 422 and "query.limit" in response.json["errors"]


def test_one_entry_by_code(http, prescriber):
    response = http.get("/api/v1/catalogue/57022-6", headers=prescriber.headers)
    assert response.json["label"] == "Numération formule sanguine"
    missing = http.get("/api/v1/catalogue/99999-9", headers=prescriber.headers)
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_catalogue_needs_a_token(http):
    assert http.get("/api/v1/catalogue?q=nfs").status_code == 401
