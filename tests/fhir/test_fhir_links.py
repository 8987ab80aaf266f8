"""Absolute URLs (fullUrl, paging links, the token URL) come from EPU_PUBLIC_BASE_URL, or from
the request with X-Forwarded-* believed only from trusted proxies; never from any Host."""

import dataclasses

import pytest

from tests.fhir.support import check_answer

FORWARDED = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}


def client_of(settings, **changes):
    from api import create_app

    app = create_app(dataclasses.replace(settings, **changes))
    app.config["TESTING"] = True
    return app.test_client()


def metadata(client, **kwargs) -> dict:
    response = client.get("/fhir/metadata", **kwargs)
    check_answer(response)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def token_url(statement: dict) -> str:
    return statement["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"]


def test_links_and_the_token_url_come_from_the_public_base_url(settings, http, prescriber):
    client = client_of(settings, public_base_url="https://epu.example.fr/base")
    statement = metadata(client, headers={"Host": "evil.example", **FORWARDED})
    assert statement["implementation"]["url"] == "https://epu.example.fr/base/fhir"
    assert token_url(statement) == "https://epu.example.fr/base/oauth/token"
    search = client.get(
        "/fhir/ServiceRequest?status=active", headers={**prescriber.headers, "Host": "evil.example"}
    )
    assert search.get_json()["link"][0]["url"].startswith("https://epu.example.fr/base/fhir/")


def test_forwarded_headers_are_believed_only_from_trusted_proxies(settings):
    direct = client_of(settings, trusted_proxies=("10.0.0.0/8",))
    untrusted = metadata(direct, headers=FORWARDED, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert untrusted["implementation"]["url"] == "http://localhost/fhir"
    proxied = metadata(direct, headers=FORWARDED, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert proxied["implementation"]["url"] == "https://evil.example/fhir"
    assert token_url(proxied) == "https://evil.example/oauth/token"


@pytest.mark.parametrize("host", ["evil.example", "epu.example.fr:443", "10.0.0.1"])
def test_an_arbitrary_host_header_never_makes_links(http, host):
    response = http.get("/fhir/metadata", headers={"Host": host, **FORWARDED})
    check_answer(response)
    assert response.status_code == 421
    assert "EPU_PUBLIC_BASE_URL" in response.get_json()["issue"][0]["diagnostics"]
    assert "evil.example/fhir" not in response.get_data(as_text=True)
