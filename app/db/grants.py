"""`hotline db grant ROLE`: the PostgreSQL privileges of the role the service connects as.

Migrations run as the owner and create no roles, so `db upgrade` works on a plain database. The
service role gets read/write on ordinary tables, only SELECT/INSERT on tables whose
`Table.info["append_only"]` is set (the audit log), and only SELECT on those marked
`owner_writes` (archived audit segments, written by `hotline audit archive` as the owner);
`alembic_version` is read-only for it.
"""

from __future__ import annotations

from sqlalchemy import text

from app.db.engine import Database


class GrantError(RuntimeError):
    pass


def grant_statements(role: str) -> list[str]:
    from app.models import metadata

    quoted = '"' + role.replace('"', '""') + '"'
    statements = [f"GRANT USAGE ON SCHEMA public TO {quoted}"]
    for table in metadata.sorted_tables:
        name = f'"{table.name}"'
        statements.append(f"REVOKE ALL ON {name} FROM {quoted}")
        if table.info.get("owner_writes"):
            statements.append(f"GRANT SELECT ON {name} TO {quoted}")
        elif table.info.get("append_only"):
            statements.append(f"GRANT SELECT, INSERT ON {name} TO {quoted}")
        else:
            statements.append(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO {quoted}")
    statements.append(f"REVOKE ALL ON alembic_version FROM {quoted}")
    statements.append(f"GRANT SELECT ON alembic_version TO {quoted}")
    statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
    return statements


async def apply_grants(database: Database, role: str) -> list[str]:
    if database.dialect != "postgresql":
        raise GrantError("db grant applies to PostgreSQL only")
    if not role.replace("_", "").isalnum():
        raise GrantError("ROLE must be a plain identifier (letters, digits, _)")
    async with database.engine.begin() as conn:
        exists = (await conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})).first()
        if not exists:
            raise GrantError(f"role {role} does not exist: create it first (CREATE ROLE {role} LOGIN …)")
        owner = (await conn.execute(text("SELECT current_user"))).scalar()
        if owner == role:
            raise GrantError("the service role must not be the owner that runs migrations")
        statements = grant_statements(role)
        for statement in statements:
            await conn.exec_driver_sql(statement)
    return statements


async def service_role_problems(database: Database) -> list[str]:
    """Why the connected role must not serve in production (PostgreSQL): superuser or table owner.

    The audit log's protection against the service itself rests on the service role having only
    SELECT/INSERT there; a superuser or the owner could disable the triggers.
    """
    if database.dialect != "postgresql":
        return []
    async with database.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT r.rolsuper, current_user AS me, "
                    "(SELECT tableowner FROM pg_tables WHERE tablename = 'audit_entries' LIMIT 1) AS owner "
                    "FROM pg_roles r WHERE r.rolname = current_user"
                )
            )
        ).one()
    problems = []
    if row.rolsuper:
        problems.append(f"the database role {row.me} is a superuser: connect as HOTLINE_DB_SERVICE_ROLE")
    if row.owner == row.me:
        problems.append(
            f"the database role {row.me} owns the tables: connect as HOTLINE_DB_SERVICE_ROLE "
            "(migrations run as the owner)"
        )
    return problems


async def owner_problem(database: Database, sqlite_path: str | None = None) -> str | None:
    """Why this connection is not the data's owner (None when it is).

    PostgreSQL: the connected role must own the audit tables (or be a member of the owning role,
    or a superuser), as for migrations — never the service role. SQLite: the process must run as
    the user owning the database file.
    """
    if database.dialect != "postgresql":
        import os

        if not sqlite_path:
            return "cannot tell who owns the SQLite database file"
        try:
            owner = os.stat(sqlite_path).st_uid
        except OSError:
            return f"cannot read the SQLite database file {sqlite_path}"
        if owner != os.geteuid():
            return f"run this as the user owning {sqlite_path} (uid {owner})"
        return None
    async with database.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT r.rolsuper, current_user AS me, t.tableowner AS owner, "
                    "pg_has_role(t.tableowner, 'MEMBER') AS member "
                    "FROM pg_roles r, pg_tables t "
                    "WHERE r.rolname = current_user AND t.tablename = 'audit_entries' "
                    "AND t.schemaname = current_schema()"
                )
            )
        ).one()
    if row.rolsuper or row.member:
        return None
    return f"the database role {row.me} does not own the audit tables: connect as the owner ({row.owner})"
