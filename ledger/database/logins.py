"""Logins: the bound login of one organization (``ledger db roles --organization UUID
--login NAME``), and the group roles' logins on a Citus cluster's workers.

Kept apart from ``ledger.database.roles`` (the groups, their grants and policies), which
calls in here; ``bind_login`` is re-exported there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from ledger.errors import ConfigurationError

# the group roles' kinds (``ledger.database.roles.KINDS``), the ones a binding checks
WIDER = ("owner", "writer", "projector", "reader")


def workers_logins(conn: psycopg.Connection[Any], roles: Iterable[str]) -> None:
    """On a Citus coordinator: lets ``roles`` log in on every worker, and on the
    coordinator leaves them group roles (NOLOGIN), in the caller's transaction.

    Why: Citus reaches the workers as the current user, so a session that takes a group
    role (``SET ROLE ledger_reader``: the HTTP service's bound tokens, a pool of the
    platform's logging in as itself) opens its connections to the workers as that role,
    which a worker refuses unless it may log in there ("role ... is not permitted to log
    in"). ``ALTER ROLE`` is propagated to every node; the second one, with its
    propagation off, is the coordinator's alone. Who may connect to a worker is the
    workers' ``pg_hba.conf`` (and ``pg_dist_authinfo`` for a password Citus sends):
    docs/scaling.md, "Roles on Citus". A worker added later receives the roles as the
    coordinator has them: run ``ledger db roles`` again after ``citus_add_node``."""
    for role in roles:
        name = sql.Identifier(role)
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(name))
        conn.execute("SET LOCAL citus.enable_alter_role_propagation = off")
        conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(name))
        conn.execute("SET LOCAL citus.enable_alter_role_propagation = on")


def one_at_a_time(conn: psycopg.Connection[Any]) -> None:
    """Two ``ledger db roles`` at once (on any schema of the cluster) take turns: their
    grants on the same database and roles would otherwise fail with PostgreSQL's "tuple
    concurrently updated". Held until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('ledger db roles'))")


def bind_login(
    conn: psycopg.Connection[Any], schema: str, prefix: str, organization: UUID, login: str
) -> bool:
    """Creates (or re-binds) the login role ``login``, bound to ``organization``: a member
    of the tenant group and of nothing else the ledger made. Returns whether the
    organization is registered in the log (a login bound to an unknown one sees nothing).
    """
    names = {kind: f"{prefix}_{kind}" for kind in (*WIDER, "tenant")}
    with conn.transaction():
        one_at_a_time(conn)
        if not login or len(login.encode()) > 63:
            raise ConfigurationError(f"--login: {login!r} must be a role name of 1 to 63 bytes")
        if login in names.values():
            raise ConfigurationError(f"--login: {login!r} is one of the ledger's group roles")
        row = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (login,)
        ).fetchone()
        if row is not None and (row[0] or row[1]):
            raise ConfigurationError(
                f"--login: {login!r} is a superuser or bypasses row-level security: "
                "it cannot be bound to one organization"
            )
        wider = (
            conn.execute(
                "SELECT r.rolname FROM pg_roles r WHERE r.rolname = ANY(%s)"
                " AND pg_has_role(%s, r.oid, 'MEMBER') ORDER BY 1",
                ([names[k] for k in WIDER], login),
            ).fetchall()
            if row is not None
            else []
        )
        if wider:
            raise ConfigurationError(
                f"--login: {login!r} is a member of {', '.join(r[0] for r in wider)}, "
                "which sees more than one organization: bind a login of its own"
            )
        if row is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(names["tenant"]), sql.Identifier(login))
        )
        conn.execute(
            sql.SQL(
                # EXCLUDED.bound_at, the default's now(): Citus takes no now() of its own
                # in the DO UPDATE of a reference table ("must be marked IMMUTABLE")
                "INSERT INTO {} (login, organization_id) VALUES (%s, %s) ON CONFLICT (login) "
                "DO UPDATE SET organization_id = EXCLUDED.organization_id,"
                " bound_at = EXCLUDED.bound_at"
            ).format(sql.Identifier(schema, "ledger_tenant_logins")),
            (login, organization),
        )
        known = conn.execute(
            sql.SQL(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE topic = 'OrganizationRegistered' "
                "AND originator_id = %s)"
            ).format(sql.Identifier(schema, "ledger_events")),
            (organization_aggregate(organization),),
        ).fetchone()
    return bool(known and known[0])


def organization_aggregate(organization: UUID) -> UUID:
    from ledger.domain import ids

    return ids.organization_id(str(organization))
