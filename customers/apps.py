from __future__ import annotations

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def _repair_search_index(sender, using: str, **kwargs) -> None:
    # A later migration may have rebuilt customers_customer (and so dropped the
    # search index's triggers): put them back and rebuild the index.
    from .search_index import repair_search_index

    repair_search_index(connections[using])
    _rebuild_deferred_indexes(connections[using])


def _rebuild_deferred_indexes(connection) -> None:
    # Indexes a crashed bulk load left dropped; none before migration 0006.
    from .deferred_indexes import rebuild_deferred_indexes
    from .models import DeferredIndex

    if DeferredIndex._meta.db_table in connection.introspection.table_names():
        rebuild_deferred_indexes(connection)


class CustomersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "customers"

    def ready(self) -> None:
        post_migrate.connect(_repair_search_index, sender=self)
