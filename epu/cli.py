"""The `epu` command: database, client accounts, catalogue, retention."""

import json
import sys
from datetime import date
from pathlib import Path

import click

from epu import catalogue, clients, history
from epu.catalogue_files import CatalogueFileError, parse_catalogue, to_fhir_codesystem
from epu.errors import ValidationFailed
from epu.settings import Settings
from models.db import make_engine, make_session_factory


def _session():
    settings = Settings.from_env()
    return make_session_factory(make_engine(settings.database_url))()


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group()
def main() -> None:
    """EPU - e-prescription unifiée."""


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from migrations import upgrade as run_upgrade

    run_upgrade(Settings.from_env().database_url, revision)


@main.group(name="clients")
def clients_group() -> None:
    """Client software accounts."""


@clients_group.command()
@click.option("--role", type=click.Choice(["prescriber", "lab", "nurse"]), required=True)
@click.option("--rpps", help="RPPS number of the prescriber or nurse (11 digits)")
@click.option("--finess", help="FINESS number of the laboratory (9 digits)")
@click.option("--name", required=True)
def create(role: str, rpps: str | None, finess: str | None, name: str) -> None:
    """Create a client; prints its id and secret as one JSON object (the secret only now)."""
    by_rpps = role in ("prescriber", "nurse")
    identifier = rpps if by_rpps else finess
    other = finess if by_rpps else rpps
    if other:
        _fail(f"--{'finess' if by_rpps else 'rpps'} does not apply to role {role}")
    if not identifier:
        _fail(f"role {role} needs --{'rpps' if by_rpps else 'finess'}")
    try:
        client, secret = clients.create_client(
            session=_session(), role=role, identifier=identifier, name=name
        )
    except ValidationFailed as error:
        _fail(error.detail)
    click.echo(
        json.dumps(
            {
                "client_id": client.client_id,
                "client_secret": secret,
                "role": client.role,
                "identifier": client.identifier,
            },
            ensure_ascii=False,
        )
    )


@clients_group.command(name="list")
def list_clients() -> None:
    """List clients (never their secrets)."""
    for client in clients.list_clients(session=_session()):
        click.echo(
            json.dumps(
                {
                    "client_id": client.client_id,
                    "role": client.role,
                    "identifier": client.identifier,
                    "name": client.name,
                    "created_at": client.created_at.isoformat(),
                    "revoked_at": client.revoked_at.isoformat() if client.revoked_at else None,
                },
                ensure_ascii=False,
            )
        )


@clients_group.command()
@click.argument("client_id")
def revoke(client_id: str) -> None:
    """Revoke a client: its tokens stop working at once."""
    if not clients.revoke_client(session=_session(), client_id=client_id):
        _fail(f"no client {client_id!r}")
    click.echo(f"revoked {client_id}")


@main.group(name="catalogue")
def catalogue_group() -> None:
    """The biology catalogue."""


@catalogue_group.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_catalogue(file: Path) -> None:
    """Load FILE (FHIR CodeSystem/ValueSet JSON, or CSV) as a new catalogue version."""
    try:
        entries = parse_catalogue(file.read_bytes(), filename=file.name)
    except CatalogueFileError as error:
        for problem in error.problems:
            click.echo(f"{file.name}: {problem}", err=True)
        sys.exit(2)
    version = catalogue.import_entries(session=_session(), entries=entries, source=file.name)
    click.echo(f"catalogue version {version}: {len(entries)} entries from {file.name}")


@catalogue_group.command(name="export")
@click.option("--format", "fmt", type=click.Choice(["fhir"]), default="fhir", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path))
def export_catalogue(fmt: str, output: Path | None) -> None:
    """Write the current catalogue as a FHIR R4 CodeSystem."""
    session = _session()
    current = catalogue.current(session)
    if current.version_id is None:
        _fail("the database has no catalogue yet")
    resource = to_fhir_codesystem(
        [entry.as_dict() for entry in current.entries.values()],
        version=str(current.version_id),
        date=date.today().isoformat(),
    )
    text = json.dumps(resource, ensure_ascii=False, indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        click.echo(text)


@catalogue_group.command(name="load-bundled")
def load_bundled() -> None:
    """Load the starter catalogue if the database has none."""
    version = catalogue.load_bundled_if_empty(session=_session())
    click.echo(
        "catalogue already present"
        if version is None
        else f"loaded the starter catalogue as version {version}"
    )


@main.command()
def expire() -> None:
    """Mark prescriptions past their validity as expired."""
    click.echo(f"expired {history.expire_due(session=_session())} prescriptions")


@main.command()
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=0),
    required=True,
    help="Days since the last update",
)
def purge(days: int) -> None:
    """Delete closed prescriptions (completed, cancelled, expired) untouched for DAYS."""
    counts = history.purge(session=_session(), older_than_days=days)
    click.echo(json.dumps(counts))


@main.command()
@click.option(
    "--follow-parent",
    is_flag=True,
    help="Stop when the parent process ends (how `make run` ties it to gunicorn)",
)
def dispatch(follow_parent: bool) -> None:
    """Deliver webhooks and FHIR notifications until stopped (SIGTERM or Ctrl-C)."""
    import logging
    import os
    import signal
    import threading

    from epu.webhooks.dispatcher import Dispatcher, dispatcher_engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    engine = dispatcher_engine(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if follow_parent:
        parent = os.getppid()

        def watch_parent() -> None:
            while not stop.wait(0.5):
                if os.getppid() != parent:
                    stop.set()

        threading.Thread(target=watch_parent, daemon=True).start()
    Dispatcher(make_session_factory(engine), settings).run(stop)
