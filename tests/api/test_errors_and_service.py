from tests.factories import prescription_body


def test_health_and_readiness(http):
    assert http.get("/healthz").json == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json["migrations"] == "at head"


def test_readiness_is_503_on_an_unmigrated_database(tmp_path, settings):
    from api import create_app
    from epu.settings import Settings

    empty = Settings(**{**vars(settings), "database_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    response = create_app(empty).test_client().get("/readyz")
    assert response.status_code == 503


def test_malformed_json_is_a_400_problem(http, prescriber):
    response = http.post(
        "/api/v1/prescriptions",
        data="{not json",
        content_type="application/json",
        headers=prescriber.headers,
    )
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert response.json["status"] == 400 and response.json["detail"]


def test_a_body_over_256_kib_is_a_413_problem(http, prescriber):
    body = prescription_body(clinical_context="x" * (300 * 1024))
    response = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers)
    assert response.status_code == 413 and response.mimetype == "application/problem+json"


def test_an_unsupported_media_type_is_a_415_problem(http, prescriber):
    response = http.post(
        "/api/v1/prescriptions",
        data="patient=x",
        content_type="application/x-www-form-urlencoded",
        headers=prescriber.headers,
    )
    assert response.status_code == 415 and response.mimetype == "application/problem+json"


def test_unknown_routes_and_methods_are_problems(http, prescriber):
    missing = http.get("/api/v1/nothing", headers=prescriber.headers)
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    method = http.delete("/api/v1/prescriptions", headers=prescriber.headers)
    assert method.status_code == 405 and method.mimetype == "application/problem+json"


def test_a_json_array_or_wrong_types_never_give_500(http, prescriber):
    for body in (
        [],
        "text",
        42,
        {"patient": [], "lines": {}},
        {"patient": {"sex": "female", "birth_date": 5}, "lines": [None]},
        {
            "patient": {"sex": "female", "birth_date": "1970-01-01"},
            "lines": [{"loinc": 5, "context": [{"code": None, "value": {}}]}],
        },
    ):
        response = http.post("/api/v1/prescriptions", json=body, headers=prescriber.headers)
        assert response.status_code in (400, 422), (body, response.json)
        assert "Traceback" not in response.get_data(as_text=True)


def test_openapi_describes_every_endpoint_and_the_problem_shape(http):
    spec = http.get("/api/openapi.json").json
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in (
        "/api/v1/prescriptions",
        "/api/v1/prescriptions/{code}",
        "/api/v1/prescriptions/{code}/status",
        "/api/v1/prescriptions/{code}/cancel",
        "/api/v1/prescriptions/{code}/history",
        "/api/v1/scans",
        "/api/v1/prescriptions/{code}/release",
        "/api/v1/prescriptions/{code}/done",
        "/api/v1/catalogue",
        "/api/v1/catalogue/{loinc}",
    ):
        assert path in paths, path
    assert "Problem" in spec["components"]["schemas"]
    assert "422" in paths["/api/v1/prescriptions"]["post"]["responses"]
    assert http.get("/api/docs").status_code == 200
