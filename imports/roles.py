"""The four roles: Django groups holding model permissions, one step above the other.

A person gets a role by being put in its group (the admin, or `manage.py create_user
--role`). Each role holds everything of the role before it. The groups are created by
the migration `imports/0002_permissions` and kept in step after every `migrate` (and
every test-database flush) by `sync_roles`, so this table is the one place they are
defined. The command line is the server's operator and needs no role.
"""

from __future__ import annotations

VIEWER = "Viewer"
EDITOR = "Editor"
IMPORTER = "Importer"
ADMINISTRATOR = "Administrator"

_VIEW = [
    "customers.view_customer",
    "customers.export_customer",
    "imports.view_importstate",
    "imports.view_importrejection",
    "imports.view_worker",
]
_EDIT = [
    "customers.add_customer",
    "customers.change_customer",  # also: clear the "edited by hand" mark
    "customers.delete_customer",
]
_IMPORT = [
    "imports.start_import",
    "imports.import_over_edits",
    "imports.cancel_import",
    "imports.resume_import",
    "imports.download_error_report",
    "imports.undo_import",
]
_ADMINISTER = [
    "imports.delete_importstate",
    "customers.view_all_exports",  # see and download everyone's exports, not only one's own
    "auth.view_user",
    "auth.add_user",
    "auth.change_user",
    "auth.delete_user",
    "auth.view_group",
    "authtoken.view_tokenproxy",
    "authtoken.add_tokenproxy",
    "authtoken.delete_tokenproxy",
]

ROLES: dict[str, list[str]] = {
    VIEWER: _VIEW,
    EDITOR: _VIEW + _EDIT,
    IMPORTER: _VIEW + _EDIT + _IMPORT,
    ADMINISTRATOR: _VIEW + _EDIT + _IMPORT + _ADMINISTER,
}
# Administrators use the admin site, which needs the staff flag on the user.
STAFF_ROLES = {ADMINISTRATOR}


def sync_roles(apps) -> None:
    """Create the groups and set their permissions to exactly ROLES (idempotent).

    `apps` is a migration's historical registry or the live one; the permissions must
    exist already (see the migration and `ImportsConfig.ready`).
    """
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted.extend(
                Permission.objects.filter(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)
