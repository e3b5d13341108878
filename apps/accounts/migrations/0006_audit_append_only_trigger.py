"""On PostgreSQL, the database itself refuses UPDATE and DELETE on audit events, and DELETE of the
chain head, whoever asks: the ORM guards in ``AuditEvent`` only cover code that goes through
Django. SQLite (embedded mode) has no such trigger; the hash chain still detects edits there.

TRUNCATE is not a row operation and is not stopped (test databases are emptied with it); it needs
the table owner's rights, which the application's database role should not have in production.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'The audit trail is append-only: % on % is not allowed.', TG_OP, TG_TABLE_NAME;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE ON accounts_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

CREATE TRIGGER audit_chain_head_kept
    BEFORE DELETE ON accounts_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS audit_chain_head_kept ON accounts_auditchainhead;
DROP TRIGGER IF EXISTS audit_event_append_only ON accounts_auditevent;
DROP FUNCTION IF EXISTS audit_append_only();
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_audit_actor_snapshot_and_chain"),
    ]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
