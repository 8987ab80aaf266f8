"""Prescription and line statuses, and which ones still count as open."""

ACTIVE = "active"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
CANCELLED = "cancelled"
EXPIRED = "expired"
PRESCRIPTION_STATUSES = (ACTIVE, IN_PROGRESS, COMPLETED, CANCELLED, EXPIRED)
OPEN = (ACTIVE, IN_PROGRESS)
CLOSED = (COMPLETED, CANCELLED, EXPIRED)

REQUESTED = "requested"
DONE = "done"
NOT_DONE = "not_done"
REMOVED = "removed"
REPLACED = "replaced"
LINE_STATUSES = (REQUESTED, DONE, NOT_DONE, REMOVED, REPLACED)

SEXES = ("female", "male", "other", "unknown")
RESULT_CHANNELS = ("mssante", "phone", "patient_mssante")
MAX_LINES = 50
MAX_RENEWALS = 12
