"""The measured scenarios, the parties that run them and the prescriptions they work on."""

import base64
import itertools
import random
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bench import bodies
from bench.client import Response, call, json_bytes, request_bytes
from bench.database import Account
from bench.load import Bounds, Call, CallSource, run

CODE = re.compile(rb'"code":\s*"([0-9A-Z]{18})"')  # the first one is the prescription's
FHIR_JSON = "application/fhir+json"
BODY_POOL = 512
READ_CODES_PER_PRESCRIBER = 10  # a FHIR page of 10 prescriptions: 50 ServiceRequests
OK = frozenset({200})
CREATED = frozenset({201})
FHIR_CREATED = frozenset({200, 201})
NOT_MODIFIED = frozenset({304})
ACCEPTED = frozenset({202})
VERSION = re.compile(rb'"version":\s*(\d+)')
PREPARE_SECONDS = 180
PAGE_RESOURCES = 50
SR = "ServiceRequest"


@dataclass(frozen=True)
class Party:
    account: Account
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def get_token(port: int, account: Account) -> str:
    basic = base64.b64encode(f"{account.client_id}:{account.secret}".encode()).decode()
    response = call(
        port,
        "POST",
        "/oauth/token",
        headers={"Authorization": f"Basic {basic}"},
        body=b"grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
    )
    if response.status != 200:
        raise RuntimeError(f"token refused ({response.status}): {response.body[:300]!r}")
    return response.json()["access_token"]


@dataclass
class World:
    """Everything the scenarios share: the server's port, the parties and the code pools."""

    port: int
    prescribers: list[Party]
    labs: list[Party]
    read_codes: list[list[str]] = field(default_factory=list)  # per prescriber, never scanned
    scan_codes: deque[str] = field(default_factory=deque)  # active, each scanned once
    json_bodies: list[bytes] = field(default_factory=list)
    fhir_bodies: list[bytes] = field(default_factory=list)
    fhir_page_path: str = ""  # found by fhir_page_query

    @classmethod
    def make(cls, port: int, prescribers: list[Party], labs: list[Party], seed: int = 7) -> "World":
        patients = cls.patients(seed)
        return cls(
            port,
            prescribers,
            labs,
            read_codes=[[] for _ in prescribers],
            json_bodies=[json_bytes(bodies.prescription(ins)) for ins in patients],
            fhir_bodies=[json_bytes(bodies.fhir_transaction(ins)) for ins in patients],
        )

    @staticmethod
    def patients(seed: int = 7) -> list[str]:
        """The INS of the patients the creates are for (the growth mode's data knows them)."""
        rng = random.Random(seed)
        return [bodies.random_ins(rng) for _ in range(BODY_POOL)]

    def prescriber(self, thread: int) -> Party:
        return self.prescribers[thread % len(self.prescribers)]

    def lab(self, thread: int) -> Party:
        return self.labs[thread % len(self.labs)]

    def request(self, method: str, path: str, party: Party | None = None, **options) -> bytes:
        headers = {**(party.auth if party else {}), **options.pop("headers", {})}
        return request_bytes(method, path, port=self.port, headers=headers, **options)


def code_of(response: Response) -> str | None:
    match = CODE.search(response.body)
    return match[1].decode() if match else None


# ---- call sources: thread index -> its calls ------------------------------------------------


def creates(world: World, keep: Callable[[int, str], None] | None = None) -> CallSource:
    """POST /api/v1/prescriptions, 5 lines, a random patient each time."""
    keep = keep or (lambda _prescriber, code: world.scan_codes.append(code))

    def source(thread: int) -> Iterator[Call]:
        party = world.prescriber(thread)
        index = thread % len(world.prescribers)

        def after(response: Response) -> None:
            if code := code_of(response):
                keep(index, code)

        offset = thread * 17
        for number in itertools.count():
            body = world.json_bodies[(offset + number) % len(world.json_bodies)]
            payload = world.request("POST", "/api/v1/prescriptions", party, body=body)
            yield Call(payload, CREATED, "create", after)

    return source


def fhir_creates(world: World) -> CallSource:
    """POST /fhir, a transaction Bundle of the same 5 lines as ServiceRequests."""

    def source(thread: int) -> Iterator[Call]:
        party = world.prescriber(thread)
        offset = thread * 17
        for number in itertools.count():
            body = world.fhir_bodies[(offset + number) % len(world.fhir_bodies)]
            headers = {"Accept": FHIR_JSON}
            payload = world.request(
                "POST", "/fhir", party, headers=headers, body=body, content_type=FHIR_JSON
            )
            yield Call(payload, FHIR_CREATED, "fhir_create")

    return source


def scans(world: World, keep: Callable[[int, Response], None] | None = None) -> CallSource:
    """POST /api/v1/scans: a laboratory takes an active code, a distinct one each time."""

    def source(thread: int) -> Iterator[Call]:
        party = world.lab(thread)
        index = thread % len(world.labs)
        after = (lambda response: keep(index, response)) if keep else None
        while True:
            try:
                code = world.scan_codes.popleft()
            except IndexError:
                return
            body = json_bytes({"code": code})
            yield Call(world.request("POST", "/api/v1/scans", party, body=body), OK, "scan", after)

    return source


PROPOSAL_BODY = json_bytes(
    {"changes": [{"op": "add", "line": {"loinc": "718-7"}, "reason": "hémoglobine utile"}]}
)


def _held(world: World) -> deque[tuple[int, str, int]]:
    """Take every waiting scan code before the row (not measured): (lab, code, version)."""
    held: deque[tuple[int, str, int]] = deque()

    def keep(lab: int, response: Response) -> None:
        code, version = code_of(response), VERSION.search(response.body)
        if code and version:
            held.append((lab, code, int(version[1])))

    bounds = Bounds(seconds=PREPARE_SECONDS, max_requests=len(world.scan_codes))
    run(world.port, scans(world, keep), 8, bounds)
    return held


def _propose(world: World, lab: int, code: str, version: int, after=None) -> Call:
    payload = world.request(
        "PATCH",
        f"/api/v1/prescriptions/{code}",
        world.labs[lab],
        headers={"If-Match": f'"v{version}"'},
        body=PROPOSAL_BODY,
    )
    return Call(payload, ACCEPTED, "propose", after)


def proposals(world: World) -> CallSource:
    """PATCH in mode proposal (the default): a held prescription gets a pending proposal."""
    held = _held(world)

    def source(thread: int) -> Iterator[Call]:
        while held:
            try:
                lab, code, version = held.popleft()
            except IndexError:
                return
            yield _propose(world, lab, code, version)

    return source


def accepts(world: World) -> CallSource:
    """The prescriber accepts a pending proposal: the changes apply in one transaction."""
    held, pending = _held(world), deque()

    def propose_all(thread: int) -> Iterator[Call]:
        while held:
            try:
                lab, code, version = held.popleft()
            except IndexError:
                return
            yield _propose(world, lab, code, version, lambda _r, code=code: pending.append(code))

    run(world.port, propose_all, 8, Bounds(seconds=PREPARE_SECONDS, max_requests=len(held)))
    owner = world.prescribers[0]  # the codes to scan are copies of one of its prescriptions

    def source(thread: int) -> Iterator[Call]:
        while pending:
            try:
                code = pending.popleft()
            except IndexError:
                return
            path = f"/api/v1/prescriptions/{code}/proposals/P1/accept"
            yield Call(world.request("POST", path, owner, body=b"{}"), OK, "accept")

    return source


def _cycle_own_codes(world: World, thread: int) -> tuple[Party, Iterator[str]]:
    codes = world.read_codes[thread % len(world.prescribers)]
    start = thread // len(world.prescribers)
    return world.prescriber(thread), itertools.islice(itertools.cycle(codes), start, None)


def status_polls(world: World, *, not_modified: bool) -> CallSource:
    """GET .../status, with the current ETag (304) or without (200)."""
    headers = {"If-None-Match": '"v1"'} if not_modified else {}
    expected, kind = (NOT_MODIFIED, "status_304") if not_modified else (OK, "status_200")

    def source(thread: int) -> Iterator[Call]:
        party, codes = _cycle_own_codes(world, thread)
        for code in codes:
            path = f"/api/v1/prescriptions/{code}/status"
            yield Call(world.request("GET", path, party, headers=headers), expected, kind)

    return source


def reads(world: World) -> CallSource:
    """GET /api/v1/prescriptions/{code}: the full prescription (an audited read)."""

    def source(thread: int) -> Iterator[Call]:
        party, codes = _cycle_own_codes(world, thread)
        for code in codes:
            yield Call(world.request("GET", f"/api/v1/prescriptions/{code}", party), OK, "read")

    return source


def qr_pngs(world: World) -> CallSource:
    """GET .../qr.png of the prescriber's own codes: rendered once, then from the cache."""

    def source(thread: int) -> Iterator[Call]:
        party, codes = _cycle_own_codes(world, thread)
        for code in codes:
            path = f"/api/v1/prescriptions/{code}/qr.png"
            yield Call(world.request("GET", path, party), OK, "qr_png")

    return source


def fhir_reads(world: World) -> CallSource:
    """GET /fhir/ServiceRequest/{code}-L{n}: one line of an own prescription, as FHIR."""

    def source(thread: int) -> Iterator[Call]:
        party, codes = _cycle_own_codes(world, thread)
        headers = {"Accept": FHIR_JSON}
        for number, code in enumerate(codes):
            path = f"/fhir/ServiceRequest/{code}-L{number % len(bodies.LINES) + 1}"
            yield Call(world.request("GET", path, party, headers=headers), OK, "fhir_read")

    return source


def fhir_requisition_searches(world: World) -> CallSource:
    """GET /fhir/ServiceRequest?requisition={code}: the 5 ServiceRequests of one prescription."""

    def source(thread: int) -> Iterator[Call]:
        party, codes = _cycle_own_codes(world, thread)
        headers = {"Accept": FHIR_JSON}
        for code in codes:
            path = f"/fhir/ServiceRequest?requisition={code}"
            yield Call(world.request("GET", path, party, headers=headers), OK, "fhir_search")

    return source


def fhir_pages(world: World) -> CallSource:
    """GET /fhir/ServiceRequest?_count=N: the first page of 50 of the prescriber's own
    ServiceRequests (N as found by `fhir_page_query`)."""

    def source(thread: int) -> Iterator[Call]:
        party = world.prescriber(thread)
        headers = {"Accept": FHIR_JSON}
        payload = world.request("GET", world.fhir_page_path, party, headers=headers)
        while True:
            yield Call(payload, OK, "fhir_page")

    return source


def fhir_page_query(world: World) -> str | None:
    """Find the _count that gives a page of 50 ServiceRequests (a count of prescriptions or of
    resources, as the server reads it); why the row cannot run, or None."""
    party = world.prescribers[0]
    for count in (PAGE_RESOURCES // len(bodies.LINES), PAGE_RESOURCES):
        path = f"/fhir/ServiceRequest?_count={count}"
        response = call(world.port, "GET", path, headers={**party.auth, "Accept": FHIR_JSON})
        if response.status != 200:
            return f"GET {path} answered {response.status}"
        entries = response.json().get("entry", [])
        found = sum(1 for e in entries if e.get("resource", {}).get("resourceType") == SR)
        if found == PAGE_RESOURCES:
            world.fhir_page_path = path
            return None
    return f"no _count gave a page of {PAGE_RESOURCES} ServiceRequests"


def fhir_available(world: World) -> str | None:
    if call(world.port, "GET", "/fhir/metadata").status != 200:
        return "no FHIR API (/fhir/metadata is not 200)"
    return None


def qr_available(world: World) -> str | None:
    code, party = world.read_codes[0][0], world.prescribers[0]
    status = call(world.port, "GET", f"/api/v1/prescriptions/{code}/qr.png", headers=party.auth)
    if status.status != 200:
        return f"no QR PNG (GET .../qr.png of an own code answered {status.status})"
    return None


LOOKUP = "/api/v1/patient-lookups"


def _lookup_bodies(seed: int = 11) -> list[bytes]:
    """One in three: a patient of the creates; the same INS with another birth date; an INS
    with no prescription (issue 10's lookup, as bench/lookup.py asks it)."""
    rng = random.Random(seed)
    known = [{"ins": ins, "birth_date": "1969-05-01"} for ins in World.patients()]
    wrong_date = [{**item, "birth_date": "1969-05-02"} for item in known]
    unknown = [{"ins": bodies.random_ins(rng), "birth_date": "1969-05-01"} for _ in known]
    mixed = [item for triple in zip(known, wrong_date, unknown, strict=True) for item in triple]
    return [json_bytes({**item, "presence": "carte_vitale"}) for item in mixed]


def patient_lookups(world: World) -> CallSource:
    """POST /api/v1/patient-lookups by a laboratory: the patient's open prescriptions."""
    payloads = _lookup_bodies()

    def source(thread: int) -> Iterator[Call]:
        lab = world.lab(thread)
        for index in itertools.count(thread * 7):
            body = payloads[index % len(payloads)]
            yield Call(world.request("POST", LOOKUP, lab, body=body), OK, "patient_lookup")

    return source


def lookup_available(world: World) -> str | None:
    response = call(
        world.port, "POST", LOOKUP, headers=world.labs[0].auth, body=_lookup_bodies()[0]
    )
    if response.status != 200:
        return f"no patient lookup (POST {LOOKUP} answered {response.status})"
    return None


def catalogue_searches(world: World) -> CallSource:
    def source(thread: int) -> Iterator[Call]:
        party = world.prescriber(thread) if thread % 2 == 0 else world.lab(thread)
        payload = world.request("GET", "/api/v1/catalogue?q=nfs", party)
        while True:
            yield Call(payload, OK, "catalogue")

    return source


def health_checks(world: World) -> CallSource:
    """GET /healthz: nearly nothing on the server, so it shows the load generator's ceiling."""

    def source(thread: int) -> Iterator[Call]:
        payload = world.request("GET", "/healthz")
        while True:
            yield Call(payload, OK, "healthz")

    return source


def baseline_inserts(port: int) -> CallSource:
    def source(thread: int) -> Iterator[Call]:
        payload = request_bytes("POST", "/insert", port=port, body=b"")
        while True:
            yield Call(payload, CREATED, "insert")

    return source


def baseline_selects(port: int, rows: int) -> CallSource:
    def source(thread: int) -> Iterator[Call]:
        rng = random.Random(thread)
        while True:
            path = f"/select/{rng.randint(1, rows)}"
            yield Call(request_bytes("GET", path, port=port), OK, "select")

    return source


# ---- the catalogue of scenarios -------------------------------------------------------------
#
# To add a row: write a call source above (thread index -> an iterator of Calls), then one
# Scenario below. `baseline` names the bare request its throughput is divided by ("insert" for
# writes that create, "select" for the rest), `target_ratio` and `p99_ms` are the targets judged
# at c=8 (None: measured, not judged), `check` says why the row cannot run on this server (the
# endpoint is not there yet: the row is then skipped and says so), or prepares what the row
# needs and returns None.

READ_P99_MS = 25.0  # issue 14: every read and poll
WRITE_P99_MS = 50.0  # creates and scans


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    baseline: str | None  # "insert" or "select": what its throughput is a ratio of
    source: Callable[[World], CallSource]
    target_ratio: float | None = None
    p99_ms: float | None = None
    consumes_codes: bool = False
    check: Callable[[World], str | None] | None = None


def _all(*checks: Callable[[World], str | None]) -> Callable[[World], str | None]:
    return lambda world: next((why for check in checks if (why := check(world))), None)


SCENARIOS = [
    Scenario(
        "fhir_create",
        "FHIR transaction, 1 Patient + 5 ServiceRequests",
        "insert",
        fhir_creates,
        0.30,
        WRITE_P99_MS,
        check=fhir_available,
    ),
    Scenario("create", "JSON create, 5 lines", "insert", creates, 0.40, WRITE_P99_MS),
    Scenario(
        "fhir_read",
        "FHIR GET ServiceRequest/{id}",
        "select",
        fhir_reads,
        0.85,
        READ_P99_MS,
        check=fhir_available,
    ),
    Scenario(
        "fhir_search",
        "FHIR GET ServiceRequest?requisition= (5 hits)",
        "select",
        fhir_requisition_searches,
        0.60,
        READ_P99_MS,
        check=fhir_available,
    ),
    Scenario(
        "fhir_page",
        "FHIR page of 50 ServiceRequests",
        "select",
        fhir_pages,
        0.25,
        READ_P99_MS,
        check=_all(fhir_available, fhir_page_query),
    ),
    Scenario(
        "status_304",
        "status poll, 304",
        "select",
        lambda world: status_polls(world, not_modified=True),
        0.85,
        READ_P99_MS,
    ),
    Scenario(
        "scan",
        "scan (take) by code",
        "select",
        scans,
        0.50,
        WRITE_P99_MS,
        consumes_codes=True,
    ),
    Scenario("read", "full JSON read", "select", reads, 0.70, READ_P99_MS),
    Scenario(
        "patient_lookup",
        "patient lookup (lab, INS + birth date)",
        "select",
        patient_lookups,
        None,
        READ_P99_MS,
        check=lookup_available,
    ),
    Scenario(
        "propose",
        "laboratory proposal (PATCH, mode proposal)",
        "select",
        proposals,
        None,
        WRITE_P99_MS,
        consumes_codes=True,
    ),
    Scenario(
        "accept",
        "prescriber accepts a proposal",
        "select",
        accepts,
        None,
        WRITE_P99_MS,
        consumes_codes=True,
    ),
    Scenario(
        "status_200",
        "status poll, 200",
        "select",
        lambda w: status_polls(w, not_modified=False),
        p99_ms=READ_P99_MS,
    ),
    Scenario("qr_png", "QR PNG (cached)", "select", qr_pngs, None, READ_P99_MS, check=qr_available),
    Scenario("catalogue", "catalogue q=nfs", "select", catalogue_searches, None, READ_P99_MS),
]
HEALTHZ = Scenario("healthz", "GET /healthz (generator check)", None, health_checks)
