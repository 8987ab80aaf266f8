"""Getting a started service ready: tokens, each prescriber's own codes, codes to scan."""

from bench import database, load, scenarios
from bench.console import log
from bench.database import Account, Database
from bench.load import Bounds
from bench.scenarios import Party, World
from bench.server import Server

PREPARE_SECONDS = 180  # bound of each preparation step


def make_world(gunicorn: Server, prescribers: list[Account], labs: list[Account]) -> World:
    def party(account: Account) -> Party:
        return Party(account, scenarios.get_token(gunicorn.port, account))

    return World.make(gunicorn.port, [party(a) for a in prescribers], [party(a) for a in labs])


def fill_read_codes(world: World) -> None:
    """Each prescriber's own codes for polls, reads and QR codes (never scanned): also a
    warm-up of every worker."""

    def keep(prescriber: int, code: str) -> None:
        codes = world.read_codes[prescriber]
        enough = len(codes) >= scenarios.READ_CODES_PER_PRESCRIBER
        (world.scan_codes if enough else codes).append(code)

    wanted = len(world.prescribers) * scenarios.READ_CODES_PER_PRESCRIBER
    bounds = Bounds(seconds=PREPARE_SECONDS, max_requests=wanted)
    result = load.run(world.port, scenarios.creates(world, keep), len(world.prescribers), bounds)
    if result.errors or not all(world.read_codes):
        raise RuntimeError(f"could not create the read codes: {dict(result.unexpected())}")


def top_up_scan_codes(world: World, db: Database, wanted: int) -> None:
    """Make sure `wanted` active codes wait for a scan: the API's creates so far, completed by
    copies of one of them made in the database (each scan takes a distinct code)."""
    missing = wanted - len(world.scan_codes)
    if missing <= 0:
        return
    log(f"copying a prescription {missing} times, to be scanned")
    template = world.read_codes[0][0]
    world.scan_codes.extend(database.clone_prescriptions(db, template, missing))
    database.analyze(db)
