"""PostgreSQL only: a trigram GIN index for `icontains` search on five columns.

Django's `icontains` on PostgreSQL compiles to `UPPER(col::text) LIKE UPPER(%s)`,
so the index is on exactly those expressions. SQLite has no trigram index and
stays correct with a scan.
"""

from django.db import migrations

SEARCH_COLUMNS = ("first_name", "last_name", "email", "company", "customer_id")
INDEX = "customer_search_trgm"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    columns = ", ".join(f"upper(({c})::text) gin_trgm_ops" for c in SEARCH_COLUMNS)
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON customers_customer USING gin ({columns})"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("customers", "0001_initial")]
    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
