"""On PostgreSQL, the database refuses to change or delete a signed report version, whoever asks
(``Report.save`` and the services refuse too, but only for code that goes through them).

A signed or amended row may still change only what ``apps.reports.models.MUTABLE_AFTER_SIGNING``
names (the PDF fields and ``updated_at``), and its status only from ``signed`` to ``amended``. The
list is written out here, as it was when this migration was made; a test compares the two.
Drafts are not touched. SQLite (embedded mode) has no such trigger.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION report_signed_version_immutable() RETURNS trigger AS $$
DECLARE
    mutable text[] := ARRAY['status', 'pdf_status', 'pdf_name', 'pdf_sha256', 'pdf_key_id', 'pdf_size',
                            'pdf_rendered_at', 'updated_at'];
BEGIN
    IF OLD.status = 'draft' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'Report % is a signed version and cannot be deleted.', OLD.id;
    END IF;
    IF (to_jsonb(NEW) - mutable) IS DISTINCT FROM (to_jsonb(OLD) - mutable)
       OR (NEW.status IS DISTINCT FROM OLD.status AND NOT (OLD.status = 'signed' AND NEW.status = 'amended')) THEN
        RAISE EXCEPTION 'Report % is a signed version and cannot be changed; amend it instead.', OLD.id;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER report_signed_version_immutable
    BEFORE UPDATE OR DELETE ON reports_report
    FOR EACH ROW EXECUTE FUNCTION report_signed_version_immutable();
"""

DROP = """
DROP TRIGGER IF EXISTS report_signed_version_immutable ON reports_report;
DROP FUNCTION IF EXISTS report_signed_version_immutable();
"""

#: What the trigger lets a signed row change (compared with MUTABLE_AFTER_SIGNING by a test).
MUTABLE_COLUMNS = frozenset(
    {"status", "pdf_status", "pdf_name", "pdf_sha256", "pdf_key_id", "pdf_size", "pdf_rendered_at", "updated_at"}
)


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0003_report_amendment_reason_ai_comment"),
    ]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
