"""GET /fhir/metadata, and every claim of the CapabilityStatement exercised by a named test."""

import importlib

from tests.fhir.support import EXT, parse_both

SUBSCRIPTIONS = "test_fhir_subscriptions"
TASK_READ = "test_fhir_tasks:test_task_read_with_etag_and_304_while_unchanged"
# Each claim of the CapabilityStatement -> the tests (module:function) that exercise it.
CLAIMS = {
    "fhirVersion:4.0.1": ["test_fhirclient:test_a_fhir_client_follows_a_prescription"],
    "format:json": ["test_fhir_errors:test_406_for_formats_other_than_json"],
    "format:application/fhir+json": [
        "test_fhir_errors:test_415_for_other_media_types_and_json_is_accepted"
    ],
    "security:OAuth": [
        "test_fhir_errors:test_401_without_a_valid_token",
        "test_fhir_errors:test_the_json_apis_tokens_are_the_fhir_tokens",
        "test_fhir_capability:test_security_names_the_token_endpoint",
    ],
    "interaction:transaction": [
        "test_fhir_transaction:test_transaction_creates_one_prescription",
        "test_fhir_transaction:test_warnings_come_back_as_an_operation_outcome_on_their_entry",
        "test_fhir_transaction:test_idempotency_key_replays_the_first_answer",
    ],
    "ServiceRequest:interaction:read": [
        "test_fhir_service_requests:test_read_service_request_says_what_the_json_api_says",
        "test_fhir_service_requests:test_reads_follow_the_json_api_visibility",
    ],
    "ServiceRequest:interaction:search-type": [
        "test_fhir_service_requests:test_search_own_by_requester_status_and_last_updated_with_paging",
        "test_fhir_service_requests:test_unknown_parameters_are_refused_unless_lenient",
    ],
    "ServiceRequest:versioning:versioned": [
        "test_fhir_service_requests:test_service_request_is_versioned_but_not_conditionally_read"
    ],
    "ServiceRequest:conditionalCreate": [
        "test_fhir_transaction:test_if_none_exist_on_the_requisition_answers_the_existing",
        "test_fhir_transaction:test_the_prescriber_softwares_identifier_makes_creation_idempotent",
    ],
    "ServiceRequest:conditionalRead:not-supported": [
        "test_fhir_service_requests:test_service_request_is_versioned_but_not_conditionally_read"
    ],
    "ServiceRequest:searchParam:requisition": [
        "test_fhir_service_requests:test_search_by_requisition_reads_the_whole_prescription"
    ],
    "ServiceRequest:searchParam:requester": [
        "test_fhir_service_requests:test_search_own_by_requester_status_and_last_updated_with_paging"
    ],
    "ServiceRequest:searchParam:status": [
        "test_fhir_service_requests:test_search_own_by_requester_status_and_last_updated_with_paging",
        "test_fhir_service_requests:test_cancelled_and_expired_prescriptions_revoke_their_requested_lines",
        "test_fhir_service_requests:test_a_withheld_execution_stays_hidden_from_the_prescriber",
    ],
    "ServiceRequest:searchParam:_id": ["test_fhir_search:test_search_by_id_one_or_several"],
    "ServiceRequest:searchParam:code": [
        "test_fhir_search:test_search_by_code_with_system_and_or_values"
    ],
    "ServiceRequest:searchParam:patient.identifier": [
        "test_fhir_search:test_post_search_gives_a_prescriber_its_own_prescriptions_of_a_patient",
        "test_fhir_search:test_an_ins_in_a_url_is_refused_and_points_to_post_search",
    ],
    "ServiceRequest:searchParam:_lastUpdated": [
        "test_fhir_search:test_date_prefixes_with_and_without_zone_read_days_in_paris",
        "test_fhir_service_requests:test_search_own_by_requester_status_and_last_updated_with_paging",
    ],
    "Task:interaction:read": [TASK_READ],
    "Task:interaction:search-type": ["test_fhir_tasks:test_task_search_by_group_identifier"],
    "Task:versioning:versioned": [TASK_READ],
    "Task:conditionalRead:not-match": [TASK_READ],
    "Task:searchParam:group-identifier": ["test_fhir_tasks:test_task_search_by_group_identifier"],
    "Task:operation:take": [
        "test_fhir_tasks:test_take_on_the_type_with_the_code_as_scanned",
        "test_fhir_tasks:test_take_on_a_task_and_the_patients_objection",
        "test_fhir_tasks:test_unknown_codes_count_towards_the_failed_scan_limit",
    ],
    "Task:operation:release": ["test_fhir_tasks:test_release_gives_the_prescription_back"],
    "Task:operation:complete": [
        "test_fhir_tasks:test_complete_reports_line_outcomes_until_the_task_is_completed",
        "test_fhir_tasks:test_complete_follows_the_done_rules",
    ],
    "Task:searchParam:focus": [
        "test_fhir_proposals:test_the_proposals_of_a_prescription_are_found_by_focus"
    ],
    "Task:operation:propose": [
        "test_fhir_proposals:test_a_proposal_is_a_change_task_the_prescriber_accepts",
        "test_fhir_proposals:test_applied_at_once_and_refusals_point_at_the_parameter",
    ],
    "Task:operation:accept-proposal": [
        "test_fhir_proposals:test_a_proposal_is_a_change_task_the_prescriber_accepts"
    ],
    "Task:operation:refuse-proposal": [
        "test_fhir_proposals:test_refuse_needs_a_comment_and_withdraw_is_the_laboratorys"
    ],
    "Task:operation:withdraw-proposal": [
        "test_fhir_proposals:test_refuse_needs_a_comment_and_withdraw_is_the_laboratorys"
    ],
    "AuditEvent:interaction:search-type": [
        "test_fhir_audit_events:test_history_as_audit_events_says_what_the_json_history_says"
    ],
    "Subscription:interaction:create": [
        f"{SUBSCRIPTIONS}:test_subscription_handshake_then_id_only_notifications"
    ],
    "Subscription:interaction:read": [f"{SUBSCRIPTIONS}:test_a_subscription_is_its_owners_only"],
    "Subscription:interaction:delete": [f"{SUBSCRIPTIONS}:test_a_subscription_is_its_owners_only"],
    "Subscription:interaction:search-type": [
        f"{SUBSCRIPTIONS}:test_a_subscription_is_its_owners_only"
    ],
    "Subscription:operation:status": [
        f"{SUBSCRIPTIONS}:test_status_and_events_recover_after_downtime"
    ],
    "Subscription:operation:events": [
        f"{SUBSCRIPTIONS}:test_status_and_events_recover_after_downtime"
    ],
    "Basic:interaction:read": [f"{SUBSCRIPTIONS}:test_the_topic_is_published_and_declared"],
    "AuditEvent:searchParam:entity": [
        "test_fhir_audit_events:test_someone_elses_or_unknown_history_is_empty"
    ],
}


def claims(statement: dict) -> set[str]:
    found = {f"fhirVersion:{statement['fhirVersion']}"}
    found |= {f"format:{fmt}" for fmt in statement["format"]}
    (rest,) = statement["rest"]
    for service in rest["security"]["service"]:
        found |= {f"security:{coding['code']}" for coding in service["coding"]}
    found |= {f"interaction:{item['code']}" for item in rest["interaction"]}
    for resource in rest["resource"]:
        kind = resource["type"]
        found |= {f"{kind}:interaction:{item['code']}" for item in resource["interaction"]}
        found |= {f"{kind}:searchParam:{item['name']}" for item in resource.get("searchParam", [])}
        found |= {f"{kind}:operation:{item['name']}" for item in resource.get("operation", [])}
        if resource.get("versioning"):
            found.add(f"{kind}:versioning:{resource['versioning']}")
        if resource.get("conditionalCreate"):
            found.add(f"{kind}:conditionalCreate")
        if resource.get("conditionalRead"):
            found.add(f"{kind}:conditionalRead:{resource['conditionalRead']}")
        for flag in ("conditionalUpdate", "updateCreate", "readHistory"):
            assert not resource.get(flag), f"{kind}.{flag} is claimed: add it to CLAIMS"
        assert resource.get("conditionalDelete", "not-supported") == "not-supported"
    return found


def test_metadata_is_open_and_declares_fhir_r4_json(fhir):
    response = fhir.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json
    parse_both(statement)
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance" and statement["status"] == "active"
    assert set(statement["format"]) == {"json", "application/fhir+json"}
    assert statement["implementation"]["url"] == "http://localhost/fhir"
    (rest,) = statement["rest"]
    assert "JSON API only" in rest["documentation"]  # cancelling is not done in FHIR
    documentation = next(r for r in rest["resource"] if r["type"] == "ServiceRequest")
    for name in ("ald", "prevention", "renewals", "result-return", "patient-instruction"):
        assert EXT + name in documentation["documentation"]


def test_security_names_the_token_endpoint(fhir, http, prescriber):
    security = fhir.get("/fhir/metadata").json["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "OAuth"
    (uris,) = security["extension"]
    token_url = uris["extension"][0]["valueUri"]
    assert token_url == "http://localhost/oauth/token"
    import base64

    basic = base64.b64encode(f"{prescriber.client_id}:{prescriber.secret}".encode()).decode()
    token = http.post(
        token_url.removeprefix("http://localhost"),
        headers={"Authorization": f"Basic {basic}"},
        data={"grant_type": "client_credentials"},
    )
    headers = {"Authorization": f"Bearer {token.json['access_token']}"}
    assert fhir.get("/fhir/Task?group-identifier=x", headers=headers).status_code == 200


def test_every_claim_is_exercised_by_a_test(fhir):
    statement = fhir.get("/fhir/metadata").json
    made = claims(statement)
    assert made == set(CLAIMS), f"unmapped: {made - set(CLAIMS)}, stale: {set(CLAIMS) - made}"
    for claim, tests in CLAIMS.items():
        for test in tests:
            module_name, function = test.split(":")
            module = importlib.import_module(f"tests.fhir.{module_name}")
            assert callable(getattr(module, function, None)), f"{claim}: no {test}"
