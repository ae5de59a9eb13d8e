from __future__ import annotations

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate


def _sync_roles(sender, *, using, apps=global_apps, **kwargs) -> None:
    from django.db import router

    from .roles import sync_roles

    # A flush (the test runner's) empties the groups; put them back like the permissions.
    if router.allow_migrate_model(using, apps.get_model("auth", "Group")):
        sync_roles(apps)


class ImportsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "imports"

    def ready(self) -> None:
        # Runs after django.contrib.auth's handler (listed first), which creates this
        # app's permissions.
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="imports.sync_roles")
