"""What a token bound to one organization may write and read, decided by the database.

A bound token's reads run as the reader role (``LEDGER_HTTP_TENANT_ROLE``, default
``ledger_reader``, made by ``ledger db roles``) in a transaction whose organization is the
token's: row-level security, not Python, decides which rows it sees (the projected
tables, and the log's events that name the organization; ``ledger.roles``). Its commands
are checked the same way before they are appended: the content (or, for a refund or a
failure named only by its payment intent, the purchase) a command is about must be
visible to the organization's reader, or the command is refused 403 and nothing is
written.

What a command is about:

* content and purchases: the content's organization (a content id belongs to one
  organization for ever: another organization's ``content.publish`` of it is a conflict);
* ``organization.register`` and ``content.publish``: the ``organization_id`` they give;
* ``user.register``: no organization (a user id is the platform's; registering one that
  exists is a duplicate), so a bound token may send it;
* ``user.delete`` (and the person's erasure): every organization the person bought
  from, so only a token bound to none may send it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ledger.commands.base import Command
from ledger.commands.catalogue import DeleteUser, PublishContent, RegisterOrganization, RegisterUser
from ledger.commands.purchases import FailPurchase, RefundPurchase
from ledger.errors import ConfigurationError
from ledger.http.answers import Forbidden
from ledger.reading.tables import set_tenant

TENANT_ROLE_ENV = "LEDGER_HTTP_TENANT_ROLE"
DEFAULT_TENANT_ROLE = "ledger_reader"
ANY_ORGANIZATION = "any"


@dataclass(frozen=True)
class About:
    """What a command is about: a content id, a payment intent, an organization id, or
    ``ANY_ORGANIZATION`` (a command no bound token may send); ``None`` fields: nothing."""

    content: str | None = None
    intent: str | None = None
    organization: str | None = None


def about(command: Command) -> About:
    if isinstance(command, RegisterUser):
        return About()
    if isinstance(command, DeleteUser):
        return About(organization=ANY_ORGANIZATION)
    if isinstance(command, RegisterOrganization | PublishContent):
        return About(organization=str(command.organization_id))
    content = getattr(command, "content_id", None)
    if content is not None:
        return About(content=str(content))
    if isinstance(command, RefundPurchase | FailPurchase):
        return About(intent=command.stripe_payment_intent_id)
    return About(organization=ANY_ORGANIZATION)  # a command this module does not know


@contextmanager
def as_tenant(conn: psycopg.Connection[Any], role: str, organization: str) -> Iterator[None]:
    """A transaction run as ``role`` with ``organization`` as its tenant (both local to
    the transaction: the pooled connection goes back as it came)."""
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        set_tenant(conn, organization)  # after the role: Citus sends it to the workers
        yield


def check_commands(
    conn: psycopg.Connection[Any],
    schema: str,
    role: str,
    organization: str,
    commands: Sequence[tuple[int | None, Command]],
) -> None:
    """``Forbidden`` naming the first command (its line, for a batch) that is not about
    ``organization``, as its reader sees the database."""
    contents = {a.content for _, c in commands if (a := about(c)).content}
    intents = {a.intent for _, c in commands if (a := about(c)).intent}
    with as_tenant(conn, role, organization):
        seen_contents = _visible(conn, schema, "content", "id::text", contents)
        seen_intents = _visible(conn, schema, "purchases", "stripe_payment_intent_id", intents)
    for line, command in commands:
        subject = about(command)
        where = f"line {line}: " if line is not None else ""
        if subject.organization == ANY_ORGANIZATION:
            raise Forbidden(
                f"{where}{getattr(command, 'type', 'this command')} concerns every "
                "organization: it needs a token bound to none"
            )
        if subject.organization is not None and subject.organization != organization:
            raise Forbidden(
                f"{where}organization_id {subject.organization} is not this token's "
                f"organization {organization}",
                "organization_id",
            )
        if subject.content is not None and subject.content not in seen_contents:
            raise Forbidden(
                f"{where}content_id {subject.content} is not content of this token's "
                f"organization {organization}",
                "content_id",
            )
        if subject.intent is not None and subject.intent not in seen_intents:
            raise Forbidden(
                f"{where}stripe_payment_intent_id {subject.intent!r} is not a purchase of "
                f"this token's organization {organization}",
                "stripe_payment_intent_id",
            )


def _visible(
    conn: psycopg.Connection[Any], schema: str, table: str, column: str, keys: set[str]
) -> set[str]:
    if not keys:
        return set()
    query = sql.SQL("SELECT {column} FROM {table} WHERE {column} = ANY(%s)").format(
        column=sql.SQL(column), table=sql.Identifier(schema, table)
    )
    return {str(row[0]) for row in conn.execute(query, (sorted(keys),)).fetchall()}


def tenant_read(
    role: str, organization: str, work: Callable[[psycopg.Connection[Any]], Any]
) -> Callable[[psycopg.Connection[Any]], Any]:
    """``work`` run as the organization's reader."""

    def scoped(conn: psycopg.Connection[Any]) -> Any:
        with as_tenant(conn, role, organization):
            return work(conn)

    return scoped


def check_role(conn: psycopg.Connection[Any], role: str) -> None:
    """At start, when a token is bound to an organization: the service's login must be
    able to take the reader role, or no bound token could be served."""
    row = conn.execute(
        "SELECT pg_has_role(current_user, r.oid, 'MEMBER') FROM pg_roles r WHERE r.rolname = %s",
        (role,),
    ).fetchone()
    if row is None:
        raise ConfigurationError(
            f"LEDGER_API_TOKENS binds tokens to organizations, and their reads and writes "
            f"are checked as the role {role!r} ({TENANT_ROLE_ENV}), which does not exist: "
            "run `ledger db roles` (docs/service.md, 'Tokens and scopes')"
        )
    if not row[0]:
        raise ConfigurationError(
            f"LEDGER_API_TOKENS binds tokens to organizations, and their reads and writes "
            f"are checked as the role {role!r} ({TENANT_ROLE_ENV}), which this login is not "
            f"a member of: GRANT {role} TO the service's login"
        )
