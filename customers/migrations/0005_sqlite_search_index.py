"""SQLite only: the FTS5 trigram search index and the triggers that keep it exact.

See customers/search_index.py. PostgreSQL is untouched (it has migration 0002's
trigram index). Existing rows are indexed here ('rebuild').
"""

from django.db import migrations

from customers.search_index import drop_search_index, ensure_search_index


def create_index(apps, schema_editor):
    ensure_search_index(schema_editor.connection)


def drop_index(apps, schema_editor):
    drop_search_index(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("customers", "0004_export_permission")]
    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
