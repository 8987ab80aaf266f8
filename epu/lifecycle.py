"""The lifecycle, written once as data: state × action × role → next state, or the refusal.

Every use case asks `check` before it changes anything; the README's domain page and the
tests are derived from the same tables (`markdown()`, tests/unit/test_lifecycle.py).
"""

from epu import errors
from epu.actors import Actor
from epu.statuses import ACTIVE, CANCELLED, COMPLETED, EXPIRED, IN_PROGRESS, PRESCRIPTION_STATUSES

Outcome = str | type[errors.DomainError]

# ---- who the caller is, relative to one prescription -----------------------------------------

PRESCRIBER = "prescriber"  # its author (any other prescriber sees nothing: 404)
HOLDER = "holder"  # the laboratory holding it now
FORMER = "former_holder"  # the laboratory that executed it last and no longer holds it
LAB = "laboratory"  # any other laboratory
SYSTEM = "system"  # EPU itself: expiry, the end of an execution
ROLES = (PRESCRIBER, HOLDER, FORMER, LAB, SYSTEM)


def role_of(*, actor: Actor, prescriber_id: int, lab_id: int | None, last_lab_id: int | None):
    """The caller's role, or None for a prescriber who is not the author (or a nurse)."""
    if actor.is_prescriber:
        return PRESCRIBER if prescriber_id == actor.client_pk else None
    if not actor.is_lab:
        return None
    if lab_id == actor.client_pk:
        return HOLDER
    if last_lab_id == actor.client_pk:
        return FORMER
    return LAB


# ---- actions ---------------------------------------------------------------------------------

READ = "read"  # read, poll
TAKE = "take"  # scan
RELEASE = "release"
PROPOSE = "propose"  # a change the prescriber answers
APPLY = "apply"  # a change applied at once (urgency, prescriber unavailable)
WITHDRAW = "withdraw"  # the laboratory withdraws its pending proposal
ANSWER = "answer"  # the prescriber accepts or refuses a proposal
REPORT = "report"  # exams done or not done
COMPLETE = "complete"  # no line left requested, no renewal left
RENEW = "renew"  # no line left requested, renewals bring done lines back
CANCEL = "cancel"
EXPIRE = "expire"

LAB_ROLES = (HOLDER, FORMER, LAB)
HOLDER_ACTIONS = (RELEASE, PROPOSE, APPLY, WITHDRAW, REPORT)
ACTORS: dict[str, tuple[str, ...]] = {
    READ: (PRESCRIBER, *LAB_ROLES),
    TAKE: LAB_ROLES,
    **{action: LAB_ROLES for action in HOLDER_ACTIONS},
    ANSWER: (PRESCRIBER,),
    COMPLETE: (SYSTEM,),
    RENEW: (SYSTEM,),
    CANCEL: (PRESCRIBER,),
    EXPIRE: (SYSTEM,),
}
ACTIONS = tuple(ACTORS)

# ---- the prescription's table ----------------------------------------------------------------

_CLOSED_REFUSALS = {
    COMPLETED: errors.PrescriptionCompleted,
    CANCELLED: errors.PrescriptionCancelled,
    EXPIRED: errors.PrescriptionExpired,
}

ALLOWED: dict[tuple[str, str, str], str] = {
    **{(state, READ, PRESCRIBER): state for state in PRESCRIPTION_STATUSES},
    **{(state, READ, FORMER): state for state in PRESCRIPTION_STATUSES if state != IN_PROGRESS},
    (IN_PROGRESS, READ, HOLDER): IN_PROGRESS,
    (ACTIVE, TAKE, LAB): IN_PROGRESS,
    (ACTIVE, TAKE, FORMER): IN_PROGRESS,  # the next renewal, at the same laboratory
    (IN_PROGRESS, TAKE, HOLDER): IN_PROGRESS,  # scanning again is harmless
    (IN_PROGRESS, RELEASE, HOLDER): ACTIVE,
    (IN_PROGRESS, PROPOSE, HOLDER): IN_PROGRESS,
    (IN_PROGRESS, APPLY, HOLDER): IN_PROGRESS,
    (IN_PROGRESS, WITHDRAW, HOLDER): IN_PROGRESS,
    (IN_PROGRESS, REPORT, HOLDER): IN_PROGRESS,
    (IN_PROGRESS, ANSWER, PRESCRIBER): IN_PROGRESS,
    (IN_PROGRESS, COMPLETE, SYSTEM): COMPLETED,
    (IN_PROGRESS, RENEW, SYSTEM): ACTIVE,
    (ACTIVE, CANCEL, PRESCRIBER): CANCELLED,
    (CANCELLED, CANCEL, PRESCRIBER): CANCELLED,  # cancelling twice is harmless
    (ACTIVE, EXPIRE, SYSTEM): EXPIRED,
}

REFUSED: dict[tuple[str, str, str], type[errors.DomainError]] = {
    (IN_PROGRESS, TAKE, LAB): errors.HeldByAnotherLaboratory,
    (IN_PROGRESS, TAKE, FORMER): errors.HeldByAnotherLaboratory,
    **{
        (state, TAKE, role): refusal
        for state, refusal in _CLOSED_REFUSALS.items()
        for role in LAB_ROLES
    },
    # The laboratory that executed it keeps it in view: a retry is told what happened.
    **{(COMPLETED, action, FORMER): errors.ExecutionCompleted for action in HOLDER_ACTIONS},
    **{(CANCELLED, action, FORMER): errors.PrescriptionCancelled for action in HOLDER_ACTIONS},
    **{(EXPIRED, action, FORMER): errors.PrescriptionExpired for action in HOLDER_ACTIONS},
    **{(ACTIVE, action, FORMER): errors.NotHeld for action in HOLDER_ACTIONS},
    **{(state, CANCEL, PRESCRIBER): errors.NotCancellable for state in (IN_PROGRESS, COMPLETED)},
    (EXPIRED, CANCEL, PRESCRIBER): errors.NotCancellable,
    **{
        (state, ANSWER, PRESCRIBER): errors.ProposalNotPending
        for state in PRESCRIPTION_STATUSES
        if state != IN_PROGRESS
    },
    **{
        (state, action, SYSTEM): errors.NotHeld
        for state in PRESCRIPTION_STATUSES
        if state != IN_PROGRESS
        for action in (COMPLETE, RENEW)
    },
    **{
        (state, EXPIRE, SYSTEM): errors.NotExpirable
        for state in PRESCRIPTION_STATUSES
        if state != ACTIVE
    },
}

# Whatever is neither allowed nor refused above cannot be seen by that role: 404, exactly as
# an unknown code (the only cells left are a laboratory acting on what it does not hold).
HIDDEN = errors.PrescriptionNotFound


def outcome(state: str, action: str, role: str | None) -> Outcome:
    key = (state, action, role)
    if role is None or role not in ACTORS[action]:
        return HIDDEN
    return ALLOWED.get(key) or REFUSED.get(key) or HIDDEN


def allows(state: str, action: str, role: str | None) -> bool:
    return isinstance(outcome(state, action, role), str)


def check(state: str, action: str, role: str | None, detail: str | None = None) -> str:
    """The next state, or raise the refusal named by the table."""
    result = outcome(state, action, role)
    if isinstance(result, str):
        return result
    if result is errors.NotCancellable and detail is None:
        why = "a laboratory has taken charge of it" if state == IN_PROGRESS else f"it is {state}"
        detail = f"The prescription cannot be cancelled: {why}."
    raise result(detail)


# ---- a proposal's table ----------------------------------------------------------------------

PENDING = "pending"
APPLIED = "applied"  # urgent or prescriber_unavailable: done at once, shown to the prescriber
WITHDRAWN = "withdrawn"
SUPERSEDED = "superseded"  # the same changes applied at once afterwards
ACCEPTED = "accepted"
REFUSED_BY_PRESCRIBER = "refused"
PROPOSAL_STATUSES = (PENDING, APPLIED, WITHDRAWN, SUPERSEDED, ACCEPTED, REFUSED_BY_PRESCRIBER)

P_WITHDRAW = "withdraw"  # by the laboratory, or when it releases the prescription or ends
P_SUPERSEDE = "supersede"
P_ACCEPT = "accept"
P_REFUSE = "refuse"
PROPOSAL_ACTIONS = {
    P_WITHDRAW: HOLDER,
    P_SUPERSEDE: HOLDER,
    P_ACCEPT: PRESCRIBER,
    P_REFUSE: PRESCRIBER,
}

PROPOSAL_ALLOWED: dict[tuple[str, str], str] = {
    (PENDING, P_WITHDRAW): WITHDRAWN,
    (PENDING, P_SUPERSEDE): SUPERSEDED,
    (PENDING, P_ACCEPT): ACCEPTED,
    (PENDING, P_REFUSE): REFUSED_BY_PRESCRIBER,
    # The same answer twice is harmless (a retry): nothing changes, no new event.
    (WITHDRAWN, P_WITHDRAW): WITHDRAWN,
    (ACCEPTED, P_ACCEPT): ACCEPTED,
    (REFUSED_BY_PRESCRIBER, P_REFUSE): REFUSED_BY_PRESCRIBER,
}


def proposal_outcome(status: str, action: str) -> Outcome:
    return PROPOSAL_ALLOWED.get((status, action), errors.ProposalNotPending)


def check_proposal(status: str, action: str, proposal_id: str) -> str:
    result = proposal_outcome(status, action)
    if isinstance(result, str):
        return result
    raise errors.ProposalNotPending(
        f"Proposal {proposal_id} is {status}, no longer pending.", status=status
    )


# ---- the README's page -----------------------------------------------------------------------


def reachable(state: str, role: str) -> bool:
    """A laboratory holds only what is in progress; taking it makes the taker the last one."""
    if role == HOLDER:
        return state == IN_PROGRESS
    return not (role == FORMER and state == IN_PROGRESS)


def _cell(result: Outcome, state: str, role: str) -> str:
    if not reachable(state, role):
        return "·"
    if isinstance(result, str):
        return "=" if result == state else f"→ {result}"
    return "404" if result is HIDDEN else result.slug


def markdown() -> str:
    """Both tables, as the README shows them."""
    states = PRESCRIPTION_STATUSES
    rows = [
        "| action | by | " + " | ".join(states) + " |",
        "|---|---|" + "---|" * len(states),
    ]
    for action in ACTIONS:
        for role in ACTORS[action]:
            cells = [_cell(outcome(state, action, role), state, role) for state in states]
            rows.append(f"| {action} | {role} | " + " | ".join(cells) + " |")
    rows += [
        "",
        "| proposal | action | by | → |",
        "|---|---|---|---|",
    ]
    for (status, action), result in PROPOSAL_ALLOWED.items():
        shown = "= (harmless repeat)" if result == status else result
        rows.append(f"| {status} | {action} | {PROPOSAL_ACTIONS[action]} | {shown} |")
    rows.append(f"| any other | any | | {errors.ProposalNotPending.slug} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
