import secrets
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow

_ACTIVE = text("status = 'active'")
_CLOSED = text("status IN ('completed', 'cancelled', 'expired')")
_REVOKED = text("revoked_at IS NOT NULL")
_PENDING = text("status = 'pending'")
# The prescriptions a laboratory can still serve. Queries that want the partial index below add
# this very clause to their WHERE: neither planner proves it from bound statuses (SQLite never,
# PostgreSQL not in a generic plan), both match it when it is written the same.
OPEN_ROWS = text("status IN ('active', 'in_progress')")


class Client(Base):
    __tablename__ = "clients"
    __table_args__ = (
        Index("ix_clients_revoked", "revoked_at", postgresql_where=_REVOKED, sqlite_where=_REVOKED),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    identifier: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class CatalogueVersion(Base):
    __tablename__ = "catalogue_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    entries: Mapped[list["CatalogueEntry"]] = relationship(
        back_populates="version", order_by="CatalogueEntry.id"
    )


class CatalogueEntry(Base):
    __tablename__ = "catalogue_entries"
    __table_args__ = (UniqueConstraint("version_id", "loinc"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("catalogue_versions.id"), index=True)
    loinc: Mapped[str] = mapped_column(String(10))
    label: Mapped[str] = mapped_column(String(300))
    synonyms: Mapped[list[str]] = mapped_column(JSON, default=list)
    required_context: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    patient_instructions: Mapped[list[str]] = mapped_column(JSON, default=list)
    specimen: Mapped[str | None] = mapped_column(String(10))
    version: Mapped[CatalogueVersion] = relationship(back_populates="entries")


class Prescription(Base):
    __tablename__ = "prescriptions"
    __table_args__ = (
        UniqueConstraint(
            "prescriber_id",
            "order_identifier",
            name="uq_prescriptions_prescriber_order_identifier",
        ),
        Index("ix_prescriptions_prescriber_updated", "prescriber_id", "updated_at", "id"),
        Index(  # the expiry command's: active prescriptions only
            "ix_prescriptions_active_expires",
            "expires_at",
            postgresql_where=_ACTIVE,
            sqlite_where=_ACTIVE,
        ),
        Index(  # the purge's: closed prescriptions only
            "ix_prescriptions_closed_updated",
            "updated_at",
            postgresql_where=_CLOSED,
            sqlite_where=_CLOSED,
        ),
        # Every prescription of a patient: the prescriber's search by patient.
        Index("ix_prescriptions_patient_lookup", "ins_pseudonym", "patient_birth_date"),
        # Only the open ones: the laboratory's lookup and the create's duplicate check. Its size
        # follows the prescriptions of the last year, not the years kept, so it stays in memory.
        Index(
            "ix_prescriptions_open_patient",
            "ins_pseudonym",
            "patient_birth_date",
            postgresql_where=OPEN_ROWS,
            sqlite_where=OPEN_ROWS,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(18), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(default=1)
    modified: Mapped[bool] = mapped_column(default=False)
    prescriber_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    prescriber_rpps: Mapped[str] = mapped_column(String(11))
    prescriber_name: Mapped[str] = mapped_column(String(200))
    # The prescriber software's own identifier of this order ("system|value"), if it gave one.
    order_identifier: Mapped[str | None] = mapped_column(String(200))
    patient_sex: Mapped[str] = mapped_column(String(8))
    patient_birth_date: Mapped[date]
    ins_pseudonym: Mapped[str | None] = mapped_column(String(64))  # see ix_..._patient_lookup
    clinical_context: Mapped[str | None] = mapped_column(Text)
    result_return: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    lab_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"))
    lab_finess: Mapped[str | None] = mapped_column(String(9))
    lab_name: Mapped[str | None] = mapped_column(String(200))
    # The laboratory that took it last: it keeps reading what it did until another takes it.
    last_lab_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"))
    sharing_withheld: Mapped[bool] = mapped_column(default=False)
    catalogue_version_id: Mapped[int | None] = mapped_column(ForeignKey("catalogue_versions.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # The latest sampling by a nurse, kept here so that the status poll needs no other query.
    sampling_status: Mapped[str | None] = mapped_column(String(24))
    sampled_at: Mapped[datetime | None]
    lines: Mapped[list["Line"]] = relationship(
        back_populates="prescription",
        order_by="Line.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )
    proposals: Mapped[list["Proposal"]] = relationship(
        back_populates="prescription",
        order_by="Proposal.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )
    samplings: Mapped[list["Sampling"]] = relationship(
        order_by="Sampling.id", cascade="all, delete-orphan", passive_deletes=True
    )


class Line(Base):
    __tablename__ = "prescription_lines"
    # Leads with the prescription: it is also the index of a prescription's lines.
    __table_args__ = (UniqueConstraint("prescription_id", "line_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("prescriptions.id", ondelete="CASCADE"))
    line_id: Mapped[str] = mapped_column(String(8))
    position: Mapped[int]
    loinc: Mapped[str | None] = mapped_column(String(10))  # not selective: no index
    label: Mapped[str | None] = mapped_column(String(300))
    text: Mapped[str | None] = mapped_column(Text)
    context: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    urgent: Mapped[bool] = mapped_column(default=False)
    ald: Mapped[bool] = mapped_column(default=False)
    prevention: Mapped[bool] = mapped_column(default=False)
    work_accident: Mapped[bool] = mapped_column(default=False, server_default=false())
    not_reimbursable: Mapped[bool] = mapped_column(default=False, server_default=false())
    off_nomenclature: Mapped[bool] = mapped_column(default=False, server_default=false())
    urgent_reason: Mapped[str | None] = mapped_column(Text)
    renewals: Mapped[int] = mapped_column(default=0)
    renewals_left: Mapped[int] = mapped_column(default=0)
    patient_instructions: Mapped[list[str]] = mapped_column(JSON, default=list)
    sampling_instructions: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="requested")
    origin: Mapped[str] = mapped_column(String(12), default="prescriber")
    replaces: Mapped[str | None] = mapped_column(String(8))
    outcome_reason: Mapped[str | None] = mapped_column(Text)
    prescription: Mapped[Prescription] = relationship(back_populates="lines")


class Proposal(Base):
    """A laboratory's change: pending until the prescriber answers, or applied at once."""

    __tablename__ = "proposals"
    __table_args__ = (
        UniqueConstraint("prescription_id", "proposal_id"),
        Index("ix_proposals_prescriber_inbox", "prescriber_id", "status", "id"),
        Index("ix_proposals_lab_inbox", "lab_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(
        ForeignKey("prescriptions.id", ondelete="CASCADE"), index=True
    )
    proposal_id: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(12))
    mode: Mapped[str] = mapped_column(String(24))
    changes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    prescriber_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    lab_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    lab_finess: Mapped[str] = mapped_column(String(9))
    lab_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None]
    prescription: Mapped[Prescription] = relationship(back_populates="proposals")


def new_public_id() -> str:
    return secrets.token_hex(11)  # 22 characters a FHIR id may hold


class Event(Base):
    """The audit trail: rows are only ever inserted (and purged with their prescription)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int | None] = mapped_column(
        ForeignKey("prescriptions.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    type: Mapped[str] = mapped_column(String(40))
    actor_role: Mapped[str] = mapped_column(String(16))
    actor_client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"), index=True)
    actor_identifier: Mapped[str | None] = mapped_column(String(16))
    actor_name: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What the API shows: random, so that ids tell nothing of the activity of the whole base.
    # Found among its prescription's few events (ix_events_prescription_id); 88 random bits
    # need no unique index, which cost 0.45 GB per million prescriptions.
    public_id: Mapped[str | None] = mapped_column(String(24), default=new_public_id)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("client_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    prescription_id: Mapped[int] = mapped_column(
        ForeignKey("prescriptions.id", ondelete="CASCADE"), index=True
    )
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NurseRead(Base):
    """A nurse scanned this prescription: she may see it and record samplings for a while."""

    __tablename__ = "nurse_reads"
    __table_args__ = (UniqueConstraint("prescription_id", "nurse_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("prescriptions.id", ondelete="CASCADE"))
    nurse_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    scanned_at: Mapped[datetime] = mapped_column(default=utcnow)


class Sampling(Base):
    """Specimens a nurse collected for some lines of a prescription (before any laboratory)."""

    __tablename__ = "samplings"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    prescription_id: Mapped[int] = mapped_column(
        ForeignKey("prescriptions.id", ondelete="CASCADE"), index=True
    )
    nurse_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    nurse_rpps: Mapped[str] = mapped_column(String(11))
    nurse_name: Mapped[str] = mapped_column(String(200))
    collected_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(24))
    specimens: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    not_collected: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    comment: Mapped[str | None] = mapped_column(Text)
    destination_finess: Mapped[str | None] = mapped_column(String(9))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookSubscription(Base):
    """Where a client wants its events pushed; the signing secrets are stored encrypted."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8), default="webhook")
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(12), default="active")
    status_reason: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None]
    failures: Mapped[int] = mapped_column(default=0)
    failing_since: Mapped[datetime | None]
    retry_at: Mapped[datetime | None]
    fhir: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    events_count: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """The outbox: one row per event and subscription, written in the event's transaction."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_number", "subscription_id", "number"),
        # The dispatcher's queues, only what is pending: each subscription's deliveries the
        # oldest first, and each (subscription, prescription) chain in event order.
        Index(
            "ix_webhook_deliveries_pending",
            "subscription_id",
            "id",
            postgresql_where=_PENDING,
            sqlite_where=_PENDING,
        ),
        Index(
            "ix_webhook_deliveries_chain",
            "subscription_id",
            "prescription_id",
            "event_id",
            postgresql_where=_PENDING,
            sqlite_where=_PENDING,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event_id: Mapped[int | None] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), index=True
    )
    prescription_id: Mapped[int | None]
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    prescription_version: Mapped[int | None]
    prescription_status: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    number: Mapped[int | None]  # FHIR event number in its subscription, given when first sent
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    event: Mapped[Event | None] = relationship()


class WebhookAttempt(Base):
    """One try at sending a delivery: what the owner sees under /deliveries."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_subscription", "subscription_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[int | None]
    kind: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    http_status: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(200))
    duration_ms: Mapped[int] = mapped_column(default=0)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
