"""The audit trail's hash chain: how an event is hashed, how it is appended, how the chain is checked.

Each ``AuditEvent`` stores ``prev_hash``, the SHA-256 of the event before it; an event's hash
covers its own fields *and* its ``prev_hash``, so changing, removing or inserting any event breaks
every link after it. The ``AuditChainHead`` row holds the hash of the newest event, so removing
events at the end is detected as well.

The hash is taken over the event **as read back from the database**, never over the values the
caller passed: PostgreSQL normalises ``jsonb`` numbers and ``inet`` addresses, and a hash of the
values before that would not match the same event read later by ``verify``.

One chain for the whole platform, in insertion order (``id``). Appending locks the head row with
an UPDATE inside the event's transaction; a concurrent append waits for that transaction to end
and then reads the new head. On SQLite the UPDATE takes the database's write lock, which gives the
same order. What a PostgreSQL trigger adds (no UPDATE or DELETE at all) is in migration 0006.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection, transaction

from .models import AuditChainHead, AuditEvent

#: ``prev_hash`` of the first event.
GENESIS = "0" * 64
#: What one ``append`` costs: lock the head, insert, read the event back, move the head.
QUERIES_PER_EVENT = 4
HEAD_PK = 1
#: Part of the hashed bytes, so that a later serialisation can be told apart from this one.
CANONICAL_VERSION = 1


def canonical(event: AuditEvent) -> bytes:
    """The bytes an event's hash is taken over: its fields as a sorted, compact JSON object."""
    created = event.created_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fields = {
        "v": CANONICAL_VERSION,
        "prev_hash": event.prev_hash,
        "created_at": created,
        "hospital": event.hospital_id,
        "actor": event.actor_id,
        "actor_email": event.actor_email,
        "actor_name": event.actor_name,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "patient": event.patient_id,
        "detail": event.detail,
        "ip_address": event.ip_address,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


def _lock_head() -> tuple[str, int]:
    """Lock the head row for this transaction and return (last hash, new length).

    An UPDATE rather than ``select_for_update``: on PostgreSQL both take the row lock, and on
    SQLite only a write takes the database lock (a read first and a write later could deadlock
    two transactions, which SQLite answers with "database is locked").
    """
    table = connection.ops.quote_name(AuditChainHead._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET length = length + 1 WHERE id = %s RETURNING last_hash, length", [HEAD_PK])  # noqa: S608 - the table name is ours
        row = cursor.fetchone()
    if row is None:
        # No head yet: a database emptied by a test's flush (migration 0005 creates it).
        AuditChainHead.objects.get_or_create(pk=HEAD_PK, defaults={"last_hash": GENESIS})
        return _lock_head()
    return row[0], row[1]


def append(event: AuditEvent) -> AuditEvent:
    """Chain ``event`` (unsaved) after the newest one and save it; returns it as stored.

    Runs in the caller's transaction (or its own), so an event rolled back with its transaction
    leaves no gap: the head moves back with it.
    """
    with transaction.atomic(savepoint=False):
        last_hash, length = _lock_head()
        event.prev_hash = last_hash
        event.save(force_insert=True)
        stored = AuditEvent._base_manager.get(pk=event.pk)
        AuditChainHead.objects.filter(pk=HEAD_PK).update(last_event_id=stored.pk, last_hash=event_hash(stored))
    return stored


@dataclass(frozen=True)
class Verdict:
    """What ``verify`` found: ``ok``, how many events it read, the head, and the first problem."""

    ok: bool
    events: int
    last_event_id: int | None
    last_hash: str
    problem: str = ""


def _events() -> Iterator[AuditEvent]:
    return AuditEvent._base_manager.order_by("id").iterator(chunk_size=2000)


def verify(anchor: tuple[int, str] | None = None) -> Verdict:
    """Walk the chain from the first event and report the first broken link.

    ``anchor`` (event id, hash) is a head recorded earlier outside the database: the chain must
    still contain that event with that hash, which a rewrite of the whole chain cannot fake.
    """
    expected, count, last_id = GENESIS, 0, None
    anchor_seen = anchor is None
    for event in _events():
        if event.prev_hash != expected:
            where = f"event #{event.pk} ({event.created_at:%Y-%m-%d %H:%M:%S}, {event.action})"
            if last_id is None:
                why = "the first event does not start the chain: events before it were removed"
            else:
                why = (
                    f"it does not follow event #{last_id}: that event was changed, "
                    "or events between them were removed or inserted"
                )
            return Verdict(False, count, last_id, expected, f"Broken link at {where}: {why}.")
        expected, count, last_id = event_hash(event), count + 1, event.pk
        if anchor is not None and event.pk == anchor[0]:
            if expected != anchor[1]:
                return Verdict(False, count, last_id, expected, f"Event #{event.pk} no longer has the anchored hash.")
            anchor_seen = True
    head = AuditChainHead.objects.filter(pk=HEAD_PK).first()
    head_hash = head.last_hash if head is not None else GENESIS
    head_id = head.last_event_id if head is not None else None
    if head_hash != expected or head_id != last_id or (head is not None and head.length != count):
        return Verdict(
            False,
            count,
            last_id,
            expected,
            f"The chain ends at event #{last_id}, but its head names event #{head_id}: "
            "the newest events were removed or changed.",
        )
    if anchor is not None and not anchor_seen:
        return Verdict(False, count, last_id, expected, f"The anchored event #{anchor[0]} is missing.")
    return Verdict(True, count, last_id, expected)
