"""Every cell of the lifecycle table, walked through the real use cases.

For each reachable (state, role), a fresh prescription is brought to that state and every action
that role may attempt is called: the use case must end in the state the table names, or raise
the refusal it names. The README's page is the same table, rendered.
"""

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, update

from epu import clients, errors, history, laboratory, lifecycle, prescriptions, proposals, views
from epu.actors import Actor
from epu.statuses import ACTIVE, CANCELLED, COMPLETED, EXPIRED, IN_PROGRESS
from models import Prescription, Proposal
from models.base import utcnow
from tests.factories import BLOOD_COUNT, PROLACTIN, prescription_body

KEY = b"k" * 32
README = Path(__file__).resolve().parents[2] / "README.md"


class World:
    """A prescriber, the laboratory that takes the prescriptions, and another laboratory."""

    def __init__(self, session):
        self.session = session
        self.doctor = self._actor("prescriber", "10005688790", "Dr Amélie Thomas")
        self.lab = self._actor("lab", "130000029", "Laboratoire des Calanques")
        self.other_lab = self._actor("lab", "750000010", "Laboratoire du Marais")

    def _actor(self, role, identifier, name) -> Actor:
        client, _ = clients.create_client(
            session=self.session, role=role, identifier=identifier, name=name
        )
        return Actor(client.id, client.role, client.identifier, client.name)

    def new(self, renewals: int = 0) -> str:
        data = prescription_body(
            lines=[{"loinc": BLOOD_COUNT, "renewals": renewals}, {"loinc": PROLACTIN}]
        )
        data["patient"]["birth_date"] = date.fromisoformat(data["patient"]["birth_date"])
        created = prescriptions.create(
            session=self.session, actor=self.doctor, data=data, ins_key=KEY, validity_days=365
        )
        return created.body["code"]

    def take(self, code: str) -> None:
        laboratory.take(session=self.session, actor=self.lab, code=code, ins_key=KEY)

    def report_all(self, code: str) -> None:
        outcomes = [
            {"line_id": line_id, "outcome": "done", "reason": None} for line_id in ("L1", "L2")
        ]
        laboratory.report(session=self.session, actor=self.lab, code=code, outcomes=outcomes)

    def propose_an_exam(self, code: str) -> None:
        change = {"op": "add", "line": {"loinc": "718-7"}, "reason": "anémie probable"}
        proposals.change(
            session=self.session, actor=self.lab, code=code, if_match=None, changes=[change]
        )

    def expire(self, code: str) -> None:
        self.session.execute(
            update(Prescription)
            .where(Prescription.code == code)
            .values(expires_at=utcnow() - timedelta(days=1))
        )
        self.session.commit()
        history.expire_due(session=self.session)

    def status(self, code: str) -> str:
        found = self.session.scalar(select(Prescription.status).where(Prescription.code == code))
        self.session.rollback()
        return found

    def reach(self, state: str, role: str, proposal: bool = False) -> tuple[str, Actor]:
        """A prescription in `state`, and an actor who has `role` towards it; with `proposal`,
        the laboratory proposed an exam on the way (still pending only while in progress)."""
        former = role == lifecycle.FORMER
        code = self.new(renewals=1 if former and state != COMPLETED else 0)
        if former or state in (IN_PROGRESS, COMPLETED) or proposal:
            self.take(code)
        if proposal:
            self.propose_an_exam(code)
        if former or state == COMPLETED:
            self.report_all(code)  # completed, or active again for the renewal
        elif proposal and state != IN_PROGRESS:
            laboratory.release(session=self.session, actor=self.lab, code=code)
        if state == CANCELLED:
            prescriptions.cancel(session=self.session, actor=self.doctor, code=code, reason="x")
        if state == EXPIRED:
            self.expire(code)
        assert self.status(code) == state
        actor = {
            lifecycle.PRESCRIBER: self.doctor,
            lifecycle.HOLDER: self.lab,
            lifecycle.FORMER: self.lab,
            lifecycle.LAB: self.other_lab,
        }[role]
        return code, actor


def _change(mode):
    def drive(session, actor, code):
        return proposals.change(
            session=session,
            actor=actor,
            code=code,
            if_match=None,
            changes=[{"op": "remove", "line_id": "L2", "reason": "fait hier", "line": None}],
            mode=mode,
        )

    return drive


def _withdraw(session, actor, code):
    """The holder's pending proposal, made just before (by the holder, when there is one)."""
    proposal_id = _pending(session, code) or "P1"
    return proposals.withdraw(session=session, actor=actor, code=code, proposal_id=proposal_id)


def _answer(verb):
    def drive(session, actor, code):
        proposal_id = _pending(session, code) or "P1"
        use_case = proposals.accept if verb == "accept" else proposals.refuse
        return use_case(
            session=session, actor=actor, code=code, proposal_id=proposal_id, comment="vu"
        )

    return drive


def _pending(session, code):
    found = session.scalar(
        select(Proposal.proposal_id)
        .join(Prescription)
        .where(Prescription.code == code, Proposal.status == "pending")
    )
    session.rollback()
    return found


DRIVERS = {
    lifecycle.READ: lambda s, a, c: prescriptions.read(session=s, actor=a, code=c),
    lifecycle.TAKE: lambda s, a, c: laboratory.take(session=s, actor=a, code=c, ins_key=KEY),
    lifecycle.RELEASE: lambda s, a, c: laboratory.release(session=s, actor=a, code=c),
    lifecycle.PROPOSE: _change("proposal"),
    lifecycle.APPLY: _change("urgent"),
    lifecycle.WITHDRAW: _withdraw,
    lifecycle.ANSWER: _answer("accept"),
    lifecycle.REPORT: lambda s, a, c: laboratory.report(
        session=s, actor=a, code=c, outcomes=[{"line_id": "L1", "outcome": "done"}]
    ),
    lifecycle.CANCEL: lambda s, a, c: prescriptions.cancel(session=s, actor=a, code=c, reason="x"),
}

REACHABLE = [
    (state, role)
    for state in (ACTIVE, IN_PROGRESS, COMPLETED, CANCELLED, EXPIRED)
    for role in (lifecycle.PRESCRIBER, lifecycle.HOLDER, lifecycle.FORMER, lifecycle.LAB)
    if lifecycle.reachable(state, role)
]


WITH_A_PROPOSAL = (lifecycle.WITHDRAW, lifecycle.ANSWER)


@pytest.mark.parametrize(("state", "role"), REACHABLE)
def test_every_action_of_every_role_does_what_the_table_says(session, state, role):
    world = World(session)
    for action, drive in DRIVERS.items():
        if role not in lifecycle.ACTORS[action]:
            continue
        code, actor = world.reach(state, role, proposal=action in WITH_A_PROPOSAL)
        expected = lifecycle.outcome(state, action, role)
        if isinstance(expected, str):
            drive(session, actor, code)
            assert world.status(code) == expected, (state, action, role)
        else:
            with pytest.raises(expected):
                drive(session, actor, code)
            session.rollback()
            assert world.status(code) == state, (state, action, role)


@pytest.mark.parametrize(("state", "role"), REACHABLE)
def test_every_change_a_caller_makes_shows_in_a_new_version(session, state, role):
    # Pollers (the ETag) and the views each process keeps (epu.prescriptions.ReadMemory) see
    # a change only through the version: whatever a caller changes must bump it.
    world = World(session)
    for action, drive in DRIVERS.items():
        if action == lifecycle.READ or role not in lifecycle.ACTORS[action]:
            continue
        if not isinstance(lifecycle.outcome(state, action, role), str):
            continue
        code, actor = world.reach(state, role, proposal=action in WITH_A_PROPOSAL)
        version, view = _seen(session, code, actor)
        drive(session, actor, code)
        new_version, new_view = _seen(session, code, actor)
        assert new_view == view or new_version > version, (state, action, role)


def _seen(session, code, actor):
    prescription = prescriptions.find(session, code)
    seen = (prescription.version, views.full(prescription, actor))
    session.rollback()
    return seen


def test_the_end_of_an_execution_completes_or_renews(session):
    world = World(session)
    for renewals, expected in ((0, COMPLETED), (1, ACTIVE)):
        code = world.new(renewals=renewals)
        world.take(code)
        world.report_all(code)
        action = lifecycle.RENEW if renewals else lifecycle.COMPLETE
        assert lifecycle.check(IN_PROGRESS, action, lifecycle.SYSTEM) == expected
        assert world.status(code) == expected


def test_only_an_active_prescription_expires(session):
    world = World(session)
    for state in (ACTIVE, IN_PROGRESS):
        code, _ = world.reach(state, lifecycle.PRESCRIBER)
        world.expire(code)
        assert world.status(code) == (
            EXPIRED if lifecycle.allows(state, "expire", "system") else state
        )


def test_the_table_is_total_and_names_a_business_refusal_everywhere():
    for state in lifecycle.PRESCRIPTION_STATUSES:
        for action, roles in lifecycle.ACTORS.items():
            for role in roles:
                result = lifecycle.outcome(state, action, role)
                assert result in lifecycle.PRESCRIPTION_STATUSES or issubclass(
                    result, errors.DomainError
                )


def test_the_readme_shows_the_table():
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- lifecycle table: generated by `python -m epu.lifecycle` -->\n")
    end = text.index("<!-- end of lifecycle table -->")
    shown = text[start:end].split("\n", 1)[1]
    assert shown == lifecycle.markdown(), "run: python -m epu.lifecycle, paste into README.md"


def test_every_action_a_caller_can_ask_for_is_walked():
    automatic = {lifecycle.COMPLETE, lifecycle.RENEW, lifecycle.EXPIRE}  # walked above
    nurses = {lifecycle.NURSE_READ, lifecycle.SAMPLE}  # walked in tests/api/test_nurse_samplings
    assert set(DRIVERS) | automatic | nurses == set(lifecycle.ACTIONS)


def test_a_page_of_prescriptions_reads_their_proposals_in_one_query(session, engine):
    world = World(session)
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    def page_queries(how_many: int) -> int:
        while len(prescriptions.list_own(session=session, actor=world.doctor)["items"]) < how_many:
            code = world.new()
            world.take(code)
            world.propose_an_exam(code)
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            prescriptions.list_own(session=session, actor=world.doctor)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return sum("proposals" in statement for statement in statements)

    assert page_queries(2) == page_queries(5) == 1
