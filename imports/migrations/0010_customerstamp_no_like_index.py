"""PostgreSQL: drop the customer stamps' `varchar_pattern_ops` index (Django's for a CharField key).

Nothing looks stamps up with LIKE; the primary key serves every lookup. The extra
btree cost each import a second index insert per row: about a quarter of its
stamping time on a first load (customers/migrations/0007 did the same for customers).
"""

from django.db import migrations

TABLE = "imports_customerstamp"


def _like_indexes(cursor) -> list[str]:
    cursor.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = %s "
        "AND indexdef LIKE '%%varchar_pattern_ops%%'",
        [TABLE],
    )
    return [name for (name,) in cursor.fetchall()]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in _like_indexes(cursor):
            schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS imports_customerstamp_customer_id_c10e574f_like "
        f"ON {TABLE} (customer_id varchar_pattern_ops)"
    )


class Migration(migrations.Migration):
    dependencies = [("imports", "0009_workers")]

    operations = [migrations.RunPython(forwards, backwards, elidable=True)]
