"""SQLAlchemy 2 mappings of EPU's tables. Nothing here commits."""

from models.base import Base
from models.tables import (
    CatalogueEntry,
    CatalogueVersion,
    Client,
    Event,
    IdempotencyRecord,
    Line,
    NurseRead,
    Prescription,
    Proposal,
    Sampling,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)

__all__ = [
    "Base",
    "CatalogueEntry",
    "CatalogueVersion",
    "Client",
    "Event",
    "IdempotencyRecord",
    "Line",
    "NurseRead",
    "Prescription",
    "Proposal",
    "Sampling",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
]
