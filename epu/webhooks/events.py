"""Which audit trail events are pushed, under which public name, and to whom."""

PING = "ping"
ALL = "*"

# Audit event type (events.type) -> the name a subscriber sees. Types absent here (reads,
# prints, lookups, rate-limit notes) are never pushed.
PUBLIC_NAMES = {
    "created": "prescription.created",
    "taken": "prescription.taken",
    "released": "prescription.released",
    "proposed": "prescription.proposed",
    "proposal_accepted": "prescription.proposal_answered",
    "proposal_refused": "prescription.proposal_answered",
    "proposal_withdrawn": "prescription.proposal_withdrawn",
    "proposal_superseded": "prescription.proposal_withdrawn",
    "modified": "prescription.modified",
    "applied_urgent": "prescription.modified",
    "applied_prescriber_unavailable": "prescription.modified",
    "line_done": "prescription.line_reported",
    "line_not_done": "prescription.line_reported",
    "completed": "prescription.completed",
    "renewed": "prescription.renewed",
    "cancelled": "prescription.cancelled",
    "expired": "prescription.expired",
    "sampled": "prescription.sampled",
    "sampling_corrected": "prescription.sampled",
}
SUBSCRIBABLE = tuple(sorted(set(PUBLIC_NAMES.values())))

# What the owner prescriber still receives when the patient objected to sharing the
# execution (the same rule as the history: the status, never the laboratory's doings).
STATUS_ONLY = {
    "prescription.created",
    "prescription.cancelled",
    "prescription.expired",
    "prescription.completed",
}


def wanted(filters: list[str], name: str) -> bool:
    return ALL in filters or name in filters
