"""The `hotline` command. Every failure an operator can cause prints one clear line and exits non-zero."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

import click
from pydantic import ValidationError

from app.db.engine import Database, DatabaseConfigError, create_database
from app.settings import Settings, load_settings


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"hotline: error: {message}", err=True)
    sys.exit(code)


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first.get("loc") else "setting"
        if not name.startswith(("HOTLINE_", "TWILIO_")):
            name = f"HOTLINE_{name}"
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        fail(f"{name}: {message}")


def run_with_database(settings: Settings, work: Callable[[Database], Coroutine[Any, Any, Any]]) -> Any:
    """Open the configured database, run `work`, and turn connection problems into one line."""

    async def runner() -> Any:
        try:
            database = create_database(
                settings.database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
            )
        except DatabaseConfigError as exc:
            fail(str(exc))
        try:
            if not await database.ping(timeout=10):
                fail("cannot connect to the database at HOTLINE_DATABASE_URL")
            return await work(database)
        finally:
            await database.dispose()

    try:
        return asyncio.run(runner())
    except KeyboardInterrupt:
        fail("interrupted", code=130)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Confidential 24/7 hotline case-intake service."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to bind.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes (PostgreSQL).",
)
@click.option("--demo", is_flag=True, help="Development only: seed demo staff and print their credentials.")
def serve(host: str, port: int, workers: int, demo: bool) -> None:
    """Apply migrations (embedded SQLite default) and start the service."""
    import uvicorn

    from app.db import migrate
    from app.logging import configure_logging

    settings = settings_or_exit()
    problems = settings.production_problems()
    if problems:
        for problem in problems:
            click.echo(f"hotline: refusing to start in production: {problem}", err=True)
        sys.exit(2)
    if settings.is_sqlite and workers > 1:
        fail("--workers above 1 needs PostgreSQL: the embedded SQLite database serves one process")
    try:
        create_database(settings.database_url)  # validates the URL before anything else happens
    except DatabaseConfigError as exc:
        fail(str(exc))
    if demo and settings.is_production:
        fail("--demo is for development only")
    if settings.is_sqlite:

        async def upgrade(database: Database) -> None:
            await migrate.upgrade(database)

        run_with_database(settings, upgrade)
    if demo:
        from app.demo import seed_demo

        async def seed(database: Database) -> Any:
            clock, sealer = await prepare(settings, database)
            return await seed_demo(database, sealer, clock)

        for creds in run_with_database(settings, seed):
            click.echo(f"demo {creds.roles}: {creds.email}  password: {creds.password}")
            click.echo(f"  TOTP secret (add to an authenticator app): {creds.totp_secret}")
            click.echo(f"  {creds.otpauth_uri}")
        click.echo("These credentials are shown once; run --demo again for new ones.")
    configure_logging(settings.log_level)
    click.echo(f"hotline: serving on http://{host}:{port} ({settings.env.value})", err=True)
    uvicorn.run(
        "app.main:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        server_header=False,
    )


@cli.group()
def db() -> None:
    """Database schema and grants."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations (run as the owning role)."""
    from app.db import migrate

    settings = settings_or_exit()

    async def work(database: Database) -> str | None:
        await migrate.upgrade(database, revision)
        return await migrate.current_revision(database)

    current = run_with_database(settings, work)
    click.echo(f"hotline: database at revision {current}")


@db.command("grant")
@click.argument("role")
def db_grant(role: str) -> None:
    """Grant the service ROLE what it needs on PostgreSQL (owner-run)."""
    from app.db.grants import GrantError, apply_grants

    settings = settings_or_exit()
    if settings.is_sqlite:
        fail("db grant applies to PostgreSQL only; SQLite has no roles")

    async def work(database: Database) -> list[str]:
        return await apply_grants(database, role)

    try:
        statements = run_with_database(settings, work)
    except GrantError as exc:
        fail(str(exc))
    for statement in statements:
        click.echo(statement)
    click.echo(f"hotline: granted {role} the service privileges")


async def prepare(settings: Settings, database: Database) -> Any:
    """Shared set-up of commands that touch data: migrations on the embedded default, then keys."""
    from app.clock import SystemClock
    from app.db import migrate
    from app.keys.store import KeyStore, Sealer
    from app.main import StartupError, open_keys

    if settings.is_sqlite:
        await migrate.upgrade(database)
    elif not await migrate.is_at_head(database):
        fail("the database schema is not at the latest revision: run `hotline db upgrade`")
    clock = SystemClock()
    try:
        material = await open_keys(settings, database, clock)
    except StartupError as exc:
        fail(str(exc))
    keystore = KeyStore(material, settings.keyring_file)
    return clock, Sealer(keystore, clock)


@cli.group()
def users() -> None:
    """Staff accounts (run on the host; every change is audited)."""


@users.command("add")
@click.option("--email", required=True)
@click.option("--name", required=True, help="Display name shown to colleagues.")
@click.option(
    "--roles",
    required=True,
    help="Comma-separated: volunteer, supervisor, admin (admin alone: never with a content role).",
)
@click.option("--phone", help="E.164 number volunteer calls are dialled to (sealed).")
@click.option("--languages", default="", help="Comma-separated language codes, e.g. en,es,ht.")
@click.option("--timezone", default="America/New_York", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_add(
    email: str, name: str, roles: str, phone: str | None, languages: str, timezone: str, password_stdin: bool
) -> None:
    """Create a staff account and print its one-time enrolment link (valid 24 h).

    The person opens the link to set their password (unless given here) and their own TOTP
    second factor; the administrator never sees it.

    Roles are given at once here: this host command (audited as `cli:…`) is the bootstrap for the
    first admins and supervisors, and the way to add a second admin while there is a single one
    (through the API, granting supervisor or admin needs a second admin's approval). Admin is
    never combined with volunteer or supervisor (admins see no case content): refused like any
    other bad input.
    """
    from app.accounts.service import create_user, enrolment_link
    from app.errors import DomainError

    settings = settings_or_exit()
    password_hash = None
    if password_stdin:
        from app.accounts.passwords import Passwords, check_policy

        password = sys.stdin.readline().rstrip("\n")
        problems = check_policy(password, email=email, name=name)
        if problems:
            fail("password refused: " + "; ".join(problems))
        password_hash = Passwords().hash(password)

    async def work(database: Database) -> tuple[str, str]:
        clock, sealer = await prepare(settings, database)
        try:
            async with database.sessionmaker() as session, session.begin():
                user, token = await create_user(
                    session,
                    sealer,
                    clock,
                    actor=_cli_actor(),
                    email=email,
                    name=name,
                    roles=roles,
                    phone=phone,
                    languages=languages,
                    timezone=timezone,
                    password_hash=password_hash,
                )
                return user.public_id, token
        except DomainError as exc:
            fail(exc.message)

    public_id, token = run_with_database(settings, work)
    click.echo(f"hotline: created {public_id} ({roles})")
    link = enrolment_link(settings.public_url, token)
    click.echo(f"One-time enrolment link (valid 24 hours; send it privately): {link}")


def _user_command(action: str) -> Any:
    """`hotline users disable|reset-mfa|end-sessions EMAIL`: recovery and offboarding on the host."""

    def command(email: str) -> None:
        from app.accounts import service as accounts

        settings = settings_or_exit()

        async def work(database: Database) -> str | None:
            clock, _sealer = await prepare(settings, database)
            async with database.sessionmaker() as session, session.begin():
                user = await accounts.user_by_email(session, email)
                if user is None:
                    fail(f"no staff account with email {email}")
                actor = _cli_actor()
                if action == "disable":
                    await accounts.disable_user(session, clock, user, actor=actor)
                elif action == "reset-mfa":
                    token = await accounts.reset_mfa(session, clock, user, actor=actor)
                    return accounts.enrolment_link(settings.public_url, token)
                else:
                    await accounts.end_sessions(session, clock, user, actor=actor)
            return None

        link = run_with_database(settings, work)
        click.echo(f"hotline: {action} done for {email}; every session of theirs has ended")
        if link:
            click.echo(f"New one-time enrolment link (valid 24 hours; send it privately): {link}")

    return command


for _action, _help in (
    ("disable", "Disable a staff account at once (offboarding); ends its sessions."),
    ("reset-mfa", "Forget a lost second factor and print a new enrolment link; ends sessions."),
    ("end-sessions", "Sign a staff member out everywhere (lost or shared device)."),
):
    users.command(_action, help=_help)(click.argument("email")(_user_command(_action)))


@cli.group()
def keys() -> None:
    """The key file: creation and status."""


@keys.command("init")
@click.option("--file", "path", required=True, type=click.Path(dir_okay=False), help="Where to create it.")
def keys_init(path: str) -> None:
    """Create a new key file (mode 0600). Never overwrites an existing file."""
    from crypto.errors import KeyFileError
    from crypto.keyfile import create_key_file

    try:
        material = create_key_file(path)
    except KeyFileError as exc:
        fail(str(exc))
    click.echo(f"hotline: created key file {path} (mode 0600)")
    click.echo(f"  checkpoint signing key: {material.signer.key_id}")
    click.echo(f"  active key-encryption key: {material.keyring.active_kek_id}")
    click.echo(
        "Back it up now, offline and in two places (e.g. an encrypted USB key in a safe and a password\n"
        "manager vault held by a second person). Without it no sealed record can be read and the audit\n"
        "log's checkpoints cannot be checked; anyone holding it together with a database copy can read\n"
        "everything. Never store it inside the database or its backups. Set HOTLINE_KEYRING_FILE to it."
    )


@keys.command("status")
def keys_status() -> None:
    """Key-encryption keys, their states, live data keys each wraps, and the backup erasure horizon."""
    from app.clock import SystemClock
    from app.keys.lifecycle import day_after, erasure_horizon, kek_destruction_date
    from app.keys.rotation import live_keys_by_kek

    settings = settings_or_exit()
    material = _load_keys_or_exit(settings)
    now = SystemClock().now()
    schedule = {
        "rotate_days": settings.kek_rotate_days,
        "backup_retention_days": settings.backup_retention_days,
    }

    async def work(database: Database) -> Any:
        return await live_keys_by_kek(database), await erasure_horizon(
            database, material, now=now, **schedule
        )

    live, horizon = run_with_database(settings, work)
    click.echo(f"key file: {settings.keyring_file}{' (DEVELOPMENT)' if material.development else ''}")
    for kek in material.keyring.kek_ids():
        info = material.keyring.kek_info(kek)
        retired = f" retired {info.retired_at:%Y-%m-%d}" if info.retired_at else ""
        due = kek_destruction_date(info, now=now, **schedule)
        if info.destroyed_at:
            fate = f"  destroyed {info.destroyed_at:%Y-%m-%d}"
        else:
            fate = f"  destroy due {day_after(due)}" if due else "  destroy due never (rotation off)"
        click.echo(
            f"  {kek}  {info.state.value:<12} created {info.created_at:%Y-%m-%d}{retired}  "
            f"live data keys: {live.get(kek, 0)}{fate}"
        )
    unknown = sorted(set(live) - set(material.keyring.kek_ids()))
    for kek in unknown:
        click.echo(f"  {kek}  UNKNOWN to this key file  live data keys: {live[kek]}")
    click.echo(f"checkpoint signing key: {material.signer.key_id}")
    click.echo(
        f"shredded subjects: {horizon.subjects:,}; backup erasure complete for {horizon.complete:,} "
        "(every KEK that wrapped their keys destroyed)"
    )
    for day, count in horizon.by_date.items():
        when = "never: rotation is off (HOTLINE_KEK_ROTATE_DAYS=0)" if day == "never" else f"by {day}"
        click.echo(f"  {count:,} more: backups cannot revive them {when}")
    if horizon.by_date:
        click.echo("  Expire database and key-file backups on the same horizon (see README, Keys).")
    sys.exit(1 if unknown else 0)


@keys.command("rotate")
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 5000))
@click.option(
    "--pause-ms", default=0, show_default=True, type=click.IntRange(0, 10000), help="Pause between batches."
)
def keys_rotate(batch_size: int, pause_ms: int) -> None:
    """Add a new active KEK and rewrap every data key under it (safe while serving; resumable)."""
    from app.clock import SystemClock
    from app.keys.lifecycle import key_file_lock
    from app.keys.rotation import rotate

    settings = settings_or_exit()
    _load_keys_or_exit(settings)

    def progress(done: int, total: int) -> None:
        click.echo(f"\rrewrapped {done:,} / {total:,} data keys", err=True, nl=False)

    async def work(database: Database) -> Any:
        # Under the key-file lock, from the file as it is now (the jobs runner may have rotated).
        with key_file_lock(settings.keyring_file):
            return await rotate(
                database,
                _load_keys_or_exit(settings),
                settings.keyring_file,
                SystemClock(),
                actor=_cli_actor(),
                batch_size=batch_size,
                progress=progress,
            )

    report = run_with_database(settings, work)
    click.echo("", err=True)
    if report.resumed:
        click.echo("hotline: resumed an interrupted rotation")
    else:
        click.echo(f"hotline: new active key-encryption key {report.new_kek}")
    click.echo(
        f"hotline: rewrapped {report.rewrapped:,} data keys in {report.batches} batches "
        f"(longest {report.longest_batch_ms:.1f} ms); retired: {', '.join(report.retired) or 'none'}"
    )
    click.echo("Back up the key file again now: it holds the new key.")


@keys.command("destroy")
@click.option("--retired-before", required=True, type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--yes", is_flag=True, help="Confirm: destroyed keys can never be recovered.")
def keys_destroy(retired_before: Any, yes: bool) -> None:
    """Destroy KEKs retired before DATE (refuses one that still wraps a live data key)."""
    from datetime import UTC

    from app.clock import SystemClock
    from app.keys.lifecycle import key_file_lock
    from app.keys.rotation import KeyOperationRefused, destroy_retired

    if not yes:
        fail("destroying keys is irreversible: add --yes to confirm")
    settings = settings_or_exit()
    _load_keys_or_exit(settings)

    async def work(database: Database) -> list[str]:
        try:
            with key_file_lock(settings.keyring_file):
                return await destroy_retired(
                    database,
                    _load_keys_or_exit(settings),
                    settings.keyring_file,
                    SystemClock(),
                    before=retired_before.replace(tzinfo=UTC),
                    actor=_cli_actor(),
                )
        except KeyOperationRefused as exc:
            fail(str(exc))

    destroyed = run_with_database(settings, work)
    click.echo(
        f"hotline: destroyed {', '.join(destroyed) if destroyed else 'nothing (no KEK retired before then)'}"
    )


@cli.group()
def audit() -> None:
    """The tamper-evident access log."""


def _cli_actor() -> Any:
    import getpass

    from app.audit.service import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    safe = "".join(ch for ch in user if ch.isalnum() or ch in "_.-")[:50] or "unknown"
    return Actor(f"cli:{safe}", ("operator",))


def _load_keys_or_exit(settings: Settings) -> Any:
    from crypto.errors import KeyFileError
    from crypto.keyfile import load_key_file

    try:
        return load_key_file(settings.keyring_file)
    except KeyFileError as exc:
        fail(str(exc))


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--witness",
    type=click.Path(file_okay=False, exists=True),
    help="Directory of checkpoints exported earlier (hotline audit export-checkpoints).",
)
def audit_verify(as_json: bool, witness: str | None) -> None:
    """Check the whole chain and every checkpoint; exit 1 on any problem."""
    import json
    from pathlib import Path

    from app.audit import service as audit_service
    from app.audit.verify import verify_chain
    from app.clock import SystemClock

    settings = settings_or_exit()
    material = _load_keys_or_exit(settings)
    clock = SystemClock()

    def progress(done: int, total: int | None) -> None:
        of = f" / {total:,}" if total else ""
        click.echo(f"\rverifying: {done:,}{of} entries", err=True, nl=False)

    async def work(database: Database) -> Any:
        async with database.engine.connect() as conn:
            report = await verify_chain(
                conn,
                material.checkpoint_verifier(),
                witness_dir=Path(witness) if witness else None,
                progress=progress,
            )
        click.echo("", err=True)
        async with database.sessionmaker() as session, session.begin():
            audit_service.record(
                session,
                clock,
                actor=_cli_actor(),
                action="audit.verify",
                outcome="ok" if report.ok else "invalid",
                details={
                    "entries": report.entries,
                    "last_seq": report.last_seq,
                    "problems": len(report.problems),
                    "witnessed": report.witnessed,
                },
            )
        return report

    report = run_with_database(settings, work)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        span = f"seq {report.first_seq}..{report.last_seq}" if report.entries else "empty"
        click.echo(f"Entries: {report.entries:,} ({span})")
        for problem in report.problems:
            click.echo(problem.line())
        click.echo(
            f"Checkpoints: {report.checkpoints:,} found, {report.checkpoints_valid:,} signatures valid"
        )
        if witness:
            click.echo(f"Witness: {report.witnessed:,} checkpoints checked")
        click.echo(f"Unanchored tail: {report.unanchored_tail:,} entries after the latest checkpoint")
        if report.segments:
            click.echo(
                f"Archived: seq 1..{report.archived_through:,} in {report.segments:,} signed segments "
                "(check the files with `hotline audit verify-segment`)"
            )
        click.echo("Result: OK" if report.ok else f"Result: {len(report.problems)} problems INVALID — exit 1")
    sys.exit(0 if report.ok else 1)


@audit.command("export-checkpoints")
@click.argument("directory", type=click.Path(file_okay=False))
def audit_export_checkpoints(directory: str) -> None:
    """Write every signed checkpoint to DIRECTORY for an outside witness (never overwrites)."""
    from pathlib import Path

    from sqlalchemy import select

    from app.audit import service as audit_service
    from app.audit.models import AuditCheckpoint
    from app.audit.verify import checkpoint_file_text
    from app.clock import SystemClock

    settings = settings_or_exit()
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)

    async def work(database: Database) -> tuple[int, int]:
        written = conflicts = 0
        async with database.sessionmaker() as session, session.begin():
            for checkpoint in await session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)):
                path = target / f"checkpoint-{checkpoint.seq:012d}.txt"
                text = checkpoint_file_text(checkpoint)
                if path.exists():
                    if path.read_text(encoding="utf-8") != text:
                        conflicts += 1
                        click.echo(
                            f"hotline: {path.name} differs from the database: kept as evidence", err=True
                        )
                    continue
                path.write_text(text, encoding="utf-8")
                written += 1
            audit_service.record(
                session,
                SystemClock(),
                actor=_cli_actor(),
                action="audit.checkpoints_exported",
                details={"written": written, "conflicts": conflicts},
            )
        return written, conflicts

    written, conflicts = run_with_database(settings, work)
    click.echo(f"hotline: {written} new checkpoint files in {target}")
    sys.exit(1 if conflicts else 0)


@audit.command("archive")
@click.option(
    "--before",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Archive entries older than this (UTC); must lie beyond HOTLINE_AUDIT_RETENTION_DAYS.",
)
@click.option(
    "--to",
    "directory",
    type=click.Path(file_okay=False),
    help="Where the signed segment files go (default HOTLINE_AUDIT_ARCHIVE_DIR).",
)
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 100_000))
def audit_archive(before: Any, directory: str | None, batch_size: int) -> None:
    """Export entries older than DATE as signed segments, then prune them (owner only; resumable)."""
    from datetime import UTC, timedelta
    from pathlib import Path

    from app.audit.archive import ArchiveRefused, ArchiveReport, archive
    from app.clock import SystemClock
    from app.db import migrate
    from app.db.engine import async_url
    from app.db.grants import owner_problem

    settings = settings_or_exit()
    material = _load_keys_or_exit(settings)
    clock = SystemClock()
    cutoff = before.replace(tzinfo=UTC)
    oldest_allowed = clock.now() - timedelta(days=settings.audit_retention_days)
    if cutoff > oldest_allowed:
        fail(
            f"--before {cutoff:%Y-%m-%d} is inside the audit retention (HOTLINE_AUDIT_RETENTION_DAYS="
            f"{settings.audit_retention_days}): only entries older than {oldest_allowed:%Y-%m-%d} may go"
        )
    target = Path(directory or settings.audit_archive_dir)

    def progress(report: ArchiveReport, name: str) -> None:
        click.echo(
            f"archived seq ..{report.through_seq:,} of ..{report.target_seq:,} "
            f"({report.archived:,} entries this run) -> {name}",
            err=True,
        )

    async def work(database: Database) -> ArchiveReport:
        problem = await owner_problem(database, async_url(settings.database_url).database)
        if problem:
            fail(f"audit archive is for the owner only: {problem}")
        if settings.is_sqlite:
            await migrate.upgrade(database)
        elif not await migrate.is_at_head(database):
            fail("the database schema is not at the latest revision: run `hotline db upgrade`")
        try:
            return await archive(
                database,
                material.signer,
                clock,
                before=cutoff,
                directory=target,
                actor=_cli_actor(),
                batch_size=batch_size,
                progress=progress,
                verifier=material.checkpoint_verifier(),
            )
        except ArchiveRefused as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"cannot write to {target}: {exc.strerror}")

    report = run_with_database(settings, work)
    if report.archived:
        click.echo(
            f"hotline: archived {report.archived:,} entries into {len(report.segments)} signed segments in "
            f"{target}; the database now holds entries after seq {report.through_seq:,}"
        )
    else:
        click.echo(f"hotline: nothing to archive (archived through seq {report.through_seq:,})")
    click.echo(
        "Keep the segment files (and copies) for as long as the log must be kept; verify-segment checks them."
    )


@audit.command("verify-segment")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def audit_verify_segment(files: tuple[str, ...]) -> None:
    """Check archived segment FILES on their own (hashes, checkpoints, signature, links between them)."""
    from pathlib import Path

    from app.audit.archive import verify_segment_files

    settings = settings_or_exit()
    material = _load_keys_or_exit(settings)
    reports = verify_segment_files([Path(f) for f in files], material.checkpoint_verifier())
    for report in reports:
        span = (
            f"seq {report.trailer.first_seq}..{report.trailer.last_seq}, signed by {report.trailer.key_id}"
            if report.trailer
            else "unreadable"
        )
        click.echo(f"{report.path}: {report.entries:,} entries, {report.checkpoints} checkpoints ({span})")
        for problem in report.problems:
            click.echo(f"  INVALID: {problem}")
    bad = sum(1 for r in reports if not r.ok)
    click.echo("Result: OK" if not bad else f"Result: {bad} of {len(reports)} segments INVALID — exit 1")
    sys.exit(1 if bad else 0)


from app.simulate import simulate  # noqa: E402

cli.add_command(simulate)


def main() -> None:
    cli(prog_name="hotline")


@cli.group()
def retention() -> None:
    """Retention: crypto-shred what the policy says is due."""


@retention.command("purge")
@click.option("--dry-run", is_flag=True, help="Only count what is due, per kind and class (never content).")
def retention_purge(dry_run: bool) -> None:
    """Crypto-shred what is due (one subject per transaction: safe to interrupt and run again)."""
    from app.clock import SystemClock
    from app.retention.service import Policy, purge

    settings = settings_or_exit()
    policy = Policy.from_settings(settings)

    def progress(done: int, total: int) -> None:
        click.echo(f"\rshredded {done:,} / {total:,} subjects", err=True, nl=False)

    async def work(database: Database) -> Any:
        from app.db.migrate import is_at_head

        if not await is_at_head(database):
            fail("the database schema is not up to date: run `hotline db upgrade` first")
        return await purge(database, SystemClock(), policy, dry_run=dry_run, progress=progress)

    totals = run_with_database(settings, work)
    if not dry_run and totals:
        click.echo("", err=True)
    verb = "due" if dry_run else "shredded"
    if not totals:
        click.echo(f"hotline: nothing {verb}")
    for key, value in totals.items():
        click.echo(f"{key}: {value:,} {verb}")


@retention.command("twilio-report")
def retention_twilio_report() -> None:
    """What Twilio still holds for this hotline, and why (counts only)."""
    from app.retention.service import twilio_report

    settings = settings_or_exit()

    async def work(database: Database) -> Any:
        async with database.sessionmaker() as session:
            return await twilio_report(session, settings)

    rows = run_with_database(settings, work)
    if not rows:
        click.echo("hotline: Twilio holds nothing of ours that we know of")
    for what, count, why in rows:
        click.echo(f"{what}: {count:,} — {why}")


if __name__ == "__main__":
    main()
