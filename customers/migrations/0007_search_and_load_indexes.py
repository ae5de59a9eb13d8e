"""Indexes for the queries the pages and the API run, and the record of deferred ones.

PostgreSQL only (SQLite keeps its FTS5 index, migration 0005):
- The trigram index covers the names, the company and the email, where search
  matches any part; the customer id, matched from its start, gets a btree on
  UPPER(customer_id) text_pattern_ops (equality and LIKE 'ABC%'), far smaller and
  cheaper to build than its trigrams (random ids have nearly as many distinct
  trigrams as characters).
- The email's btree and the two varchar_pattern_ops indexes Django adds for
  customer_id (unique) and email served no query (EXPLAIN of every list, search,
  API and export query): gone. Django adds the customer_id one again only if a
  later migration alters that field.
"""

from django.db import migrations, models

TRIGRAM_COLUMNS = ("first_name", "last_name", "company", "email")
OLD_TRIGRAM_COLUMNS = ("first_name", "last_name", "email", "company", "customer_id")
SEARCH_INDEX = "customer_search_trgm"
ID_PREFIX_INDEX = "customer_id_upper_prefix"
CUSTOMER_ID_LIKE = "customers_customer_customer_id_4c877f6e_like"


def _trigram_sql(columns):
    spec = ", ".join(f"upper(({c})::text) gin_trgm_ops" for c in columns)
    return f"CREATE INDEX {SEARCH_INDEX} ON customers_customer USING gin ({spec})"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {CUSTOMER_ID_LIKE}")
    schema_editor.execute(f"DROP INDEX IF EXISTS {SEARCH_INDEX}")
    schema_editor.execute(_trigram_sql(TRIGRAM_COLUMNS))
    schema_editor.execute(
        f"CREATE INDEX {ID_PREFIX_INDEX} ON customers_customer "
        "(upper((customer_id)::text) text_pattern_ops)"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {ID_PREFIX_INDEX}")
    schema_editor.execute(f"DROP INDEX IF EXISTS {SEARCH_INDEX}")
    schema_editor.execute(_trigram_sql(OLD_TRIGRAM_COLUMNS))
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {CUSTOMER_ID_LIKE} ON customers_customer "
        "(customer_id varchar_pattern_ops)"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0006_created_by_import"),
    ]

    operations = [
        migrations.CreateModel(
            name="DeferredIndex",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=63, unique=True)),
                ("definition", models.TextField()),
                ("deferred_by", models.CharField(blank=True, max_length=100)),
                ("deferred_at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.AlterField(
            model_name="customer",
            name="email",
            field=models.EmailField(max_length=254),
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
