"""The printable ordonnance costs seconds of CPU at worst: rendered once per version (and name
printed), and one rendering at a time per client."""

import threading

from api.documents.printing import RenderCache
from api.errors import Problem
from tests.factories import prescription_body


def pdf(http, party, code, **query):
    return http.get(
        f"/api/v1/prescriptions/{code}/ordonnance.pdf", query_string=query, headers=party.headers
    )


def test_the_same_version_is_rendered_once(http, app, prescriber, monkeypatch):
    import api.documents.routes as routes

    renders = []
    real = routes.render_ordonnance_pdf
    monkeypatch.setattr(
        routes, "render_ordonnance_pdf", lambda *a, **k: renders.append(1) or real(*a, **k)
    )
    app.extensions["epu.pdf_cache"] = RenderCache()
    code = http.post(
        "/api/v1/prescriptions", json=prescription_body(), headers=prescriber.headers
    ).json["code"]
    first, again = pdf(http, prescriber, code), pdf(http, prescriber, code)
    assert first.status_code == again.status_code == 200
    assert first.data == again.data and len(renders) == 1
    named = pdf(http, prescriber, code, patient_name="Jeanne Martin")
    assert named.data != first.data and len(renders) == 2  # the name is part of the key
    http.post(
        f"/api/v1/prescriptions/{code}/cancel",
        json={"reason": "erreur"},
        headers=prescriber.headers,
    )
    assert pdf(http, prescriber, code).data != first.data and len(renders) == 3  # a new version


def test_one_client_renders_one_ordonnance_at_a_time():
    cache = RenderCache()
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(5)
        return b"%PDF-slow"

    worker = threading.Thread(target=lambda: cache.get_or_render("a", 1, slow))
    worker.start()
    started.wait(5)
    try:
        cache.get_or_render("b", 1, lambda: b"%PDF-b")
        raise AssertionError("a second rendering by the same client was allowed")
    except Problem as refused:
        assert refused.status == 429 and refused.headers["Retry-After"]
    assert cache.get_or_render("c", 2, lambda: b"%PDF-c") == b"%PDF-c"  # another client
    release.set()
    worker.join(5)
    assert cache.get_or_render("a", 1, lambda: b"other") == b"%PDF-slow"  # cached


def test_the_cache_is_bounded_in_bytes():
    cache = RenderCache(max_bytes=100)
    for n in range(10):
        cache.get_or_render(str(n), 1, lambda: b"x" * 40)
    assert cache.get_or_render("0", 1, lambda: b"new") == b"new"  # evicted long ago
