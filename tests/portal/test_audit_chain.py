"""The audit trail is tamper-evident: every event is chained to the one before by SHA-256,
``manage.py verify_audit`` finds the first broken link (exit status 1) and passes an intact chain,
concurrent writers never fork the chain, and on PostgreSQL the database itself refuses UPDATE and
DELETE of audit events and of signed report versions.

Tampering is done the way an intruder with database access would: with SQL, the triggers switched
off for the session (``session_replication_role = replica``, a superuser's right) on PostgreSQL,
plainly on SQLite (embedded mode has no triggers; the chain still catches the change).
"""

from __future__ import annotations

import io
import threading

import pytest
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction
from django_scopes import scopes_disabled

from apps.accounts import audit, auditchain
from apps.accounts.auditchain import GENESIS, QUERIES_PER_EVENT, event_hash
from apps.accounts.models import AuditChainHead, AuditEvent
from apps.reports.models import MUTABLE_AFTER_SIGNING, Report
from tests.factories import make_study
from tests.reports.helpers import write_report

IP = "203.0.113.7"


def chain() -> list[AuditEvent]:
    with scopes_disabled():
        return list(AuditEvent.objects.order_by("id"))


def record_some(world, n: int = 3) -> list[AuditEvent]:
    return [
        audit.record("patient.view", hospital=world.a, actor=world.alice, obj=world.paul_record, ip=IP, n=i)
        for i in range(n)
    ]


def tamper(sql: str, params: list | tuple = ()) -> None:
    """Run ``sql`` past the triggers, as someone with the database's superuser could."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)


def verify_fails() -> str:
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit", stdout=io.StringIO())
    assert failure.value.returncode == 1
    return str(failure.value)


def verify_passes(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


# --- the chain ------------------------------------------------------------------------------------


def test_each_event_names_the_hash_of_the_one_before(world):
    record_some(world)
    events = chain()
    assert len(events) > 3  # the world's setup wrote some too
    assert events[0].prev_hash == GENESIS
    for before, after in zip(events, events[1:], strict=False):
        assert after.prev_hash == event_hash(before)
    head = AuditChainHead.objects.get()
    assert (head.last_event_id, head.last_hash, head.length) == (events[-1].pk, event_hash(events[-1]), len(events))


def test_the_hash_covers_the_fields_and_the_link(world):
    event = record_some(world, 1)[0]
    original = event_hash(event)
    for field, value in [("action", "patient.list"), ("actor_email", "x@example.org"), ("detail", {"n": 1})]:
        changed = AuditEvent._base_manager.get(pk=event.pk)
        setattr(changed, field, value)
        assert event_hash(changed) != original, field
    relinked = AuditEvent._base_manager.get(pk=event.pk)
    relinked.prev_hash = "f" * 64
    assert event_hash(relinked) != original


def test_an_event_costs_a_fixed_number_of_queries(world, django_assert_num_queries):
    with django_assert_num_queries(QUERIES_PER_EVENT):
        audit.record("patient.view", hospital=world.a, actor=world.alice, obj=world.paul_record, ip=IP)


def test_events_are_only_written_through_the_chain(world):
    with pytest.raises(RuntimeError, match="audit.record"):
        AuditEvent.objects.create(hospital=world.a, action="patient.view")


def test_a_rolled_back_event_leaves_no_gap(world):
    record_some(world, 1)
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        record_some(world, 1)
        1 / 0  # noqa: B018 - the surrounding work fails
    record_some(world, 1)
    assert "intact" in verify_passes()


# --- verify_audit ---------------------------------------------------------------------------------


def test_verify_passes_an_intact_chain_and_prints_its_head(world):
    record_some(world)
    out = verify_passes()
    last = chain()[-1]
    assert f"intact: {len(chain())} events" in out
    assert f"{last.pk}:{event_hash(last)}" in out


def test_verify_passes_an_empty_trail(db):
    assert "intact: 0 events" in verify_passes()


def test_the_command_exits_with_status_1_on_a_broken_chain(world):
    first, second, _ = record_some(world)
    tamper("UPDATE accounts_auditevent SET detail = %s WHERE id = %s", ['{"n": 99}', first.pk])
    with pytest.raises(SystemExit) as exit_:
        ManagementUtility(["manage.py", "verify_audit"]).execute()
    assert exit_.value.code == 1


def test_a_changed_event_is_found(world):
    first, second, _ = record_some(world)
    tamper("UPDATE accounts_auditevent SET actor_email = %s WHERE id = %s", ["mallory@example.org", first.pk])
    message = verify_fails()
    assert f"Broken link at event #{second.pk}" in message
    assert f"does not follow event #{first.pk}" in message


def test_a_removed_event_is_found(world):
    first, second, third = record_some(world)
    tamper("DELETE FROM accounts_auditevent WHERE id = %s", [second.pk])
    assert f"Broken link at event #{third.pk}" in verify_fails()


def test_removing_the_newest_events_is_found(world):
    *_, newest = record_some(world)
    tamper("DELETE FROM accounts_auditevent WHERE id = %s", [newest.pk])
    assert f"its head names event #{newest.pk}" in verify_fails()


def test_a_forged_event_is_found(world):
    """An event inserted by SQL: with a made-up link it breaks at once; with the right link it is
    still not the event the head names."""
    *_, newest = record_some(world)
    columns = (
        "hospital_id, actor_id, actor_email, actor_name, action, object_type, object_id, object_repr, "
        "patient_id, detail, ip_address, created_at, prev_hash"
    )
    forged = [world.a.pk, world.alice.pk, world.alice.email, "", "patient.view", "", "", "", None, "{}", None]
    sql = f"INSERT INTO accounts_auditevent ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"  # noqa: S608
    tamper(sql, [*forged, newest.created_at, event_hash(newest)])
    assert "the newest events were removed or changed" in verify_fails()
    tamper("DELETE FROM accounts_auditevent WHERE id > %s", [newest.pk])
    tamper(sql, [*forged, newest.created_at, "e" * 64])
    assert "Broken link at event" in verify_fails()


def test_an_anchor_catches_a_rewritten_chain(world):
    """Someone who rewrites every hash after their change (and the head) fools the walk, but not
    a head recorded earlier outside the database."""
    first, *_ = record_some(world)
    anchor = verify_passes().rsplit(" ", 1)[-1].strip()
    tamper("UPDATE accounts_auditevent SET object_repr = %s WHERE id = %s", ["nothing to see", first.pk])
    previous = None
    for event in chain():
        if previous is not None and event.prev_hash != event_hash(previous):
            tamper("UPDATE accounts_auditevent SET prev_hash = %s WHERE id = %s", [event_hash(previous), event.pk])
            event = AuditEvent._base_manager.get(pk=event.pk)
        previous = event
    tamper("UPDATE accounts_auditchainhead SET last_hash = %s", [event_hash(previous)])
    assert "intact" in verify_passes()
    with pytest.raises(CommandError, match="no longer has the anchored hash"):
        call_command("verify_audit", "--anchor", anchor, stdout=io.StringIO())


def test_an_anchor_must_be_well_formed(world):
    with pytest.raises(CommandError, match="EVENT_ID:SHA256"):
        call_command("verify_audit", "--anchor", "latest", stdout=io.StringIO())


# --- PostgreSQL triggers --------------------------------------------------------------------------


def _sql_refused(sql: str, params: list | tuple, match: str) -> None:
    with pytest.raises(DatabaseError, match=match), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_the_database_refuses_to_change_or_delete_audit_events(world, postgres_required):
    event = record_some(world, 1)[0]
    _sql_refused("UPDATE accounts_auditevent SET action = 'x' WHERE id = %s", [event.pk], "append-only")
    _sql_refused("DELETE FROM accounts_auditevent WHERE id = %s", [event.pk], "append-only")
    _sql_refused("DELETE FROM accounts_auditchainhead", [], "append-only")
    assert AuditEvent._base_manager.get(pk=event.pk).action == "patient.view"
    assert "intact" in verify_passes()


@pytest.fixture
def signed(world):
    return write_report(make_study(world.paul_record, world.alice), world.alice, sign=True)


def test_the_database_refuses_to_change_or_delete_a_signed_report(signed, postgres_required):
    for column, value in [("findings", "Edited later."), ("final_label", "viral_pneumonia"), ("signed_at", None)]:
        _sql_refused(f"UPDATE reports_report SET {column} = %s WHERE id = %s", [value, signed.pk], "cannot be changed")  # noqa: S608
    _sql_refused("UPDATE reports_report SET status = 'draft' WHERE id = %s", [signed.pk], "cannot be changed")
    _sql_refused("DELETE FROM reports_report WHERE id = %s", [signed.pk], "cannot be deleted")
    with scopes_disabled():
        assert Report.objects.get(pk=signed.pk).findings == "Clear lung fields."


def test_a_signed_report_may_still_get_its_pdf_and_be_superseded(signed, postgres_required):
    with scopes_disabled():
        updated = Report.objects.filter(pk=signed.pk).update(pdf_status="failed", pdf_name="reports/x.pdf.enc")
        assert updated == 1
        Report.objects.filter(pk=signed.pk).update(status="amended")
    _sql_refused("UPDATE reports_report SET status = 'signed' WHERE id = %s", [signed.pk], "cannot be changed")


def test_drafts_are_not_held_by_the_trigger(world, postgres_required):
    draft = write_report(make_study(world.paul_record, world.alice), world.alice)
    with scopes_disabled():
        assert Report.objects.filter(pk=draft.pk).update(findings="Rewritten.") == 1
        draft.refresh_from_db()
        draft.delete()
        assert not Report.objects.filter(pk=draft.pk).exists()


def test_the_trigger_allows_exactly_what_the_model_allows():
    from importlib import import_module

    migration = import_module("apps.reports.migrations.0004_signed_report_trigger")
    assert migration.MUTABLE_COLUMNS == MUTABLE_AFTER_SIGNING


# --- concurrency ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_concurrent_writers_keep_one_chain(transactional_db, postgres_required, world):
    """Eight threads, each with its own database connection, write 25 events each at once, some
    in transactions that do more work after the event: the chain stays one unbroken line."""
    threads, per_thread = 8, 25
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                if i % 5 == 0:
                    with transaction.atomic():
                        audit.record("patient.view", hospital=world.a, actor=world.alice, thread=index, i=i)
                        audit.record("study.view", hospital=world.a, actor=world.alice, thread=index, i=i)
                else:
                    audit.record("patient.view", hospital=world.b, actor=world.dora, thread=index, i=i)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    before = len(chain())
    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert errors == []
    assert len(chain()) == before + threads * (per_thread + per_thread // 5)
    verdict = auditchain.verify()
    assert verdict.ok, verdict.problem
    assert len({e.prev_hash for e in chain()}) == len(chain()), "two events share a predecessor: a fork"
