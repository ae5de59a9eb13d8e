"""API permissions: Django's model permissions, the reading ones included.

DRF's DjangoModelPermissions lets any logged-in user read (GET needs no permission);
here reading needs `view_<model>`, like the pages and the admin. An action that is
not plain CRUD (start, cancel or resume an import, download its error report)
names its permissions in the viewset's `action_permissions`.
"""

from __future__ import annotations

from rest_framework.permissions import DjangoModelPermissions

VIEW = ["%(app_label)s.view_%(model_name)s"]


class ModelPermissions(DjangoModelPermissions):
    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": VIEW,
        "HEAD": VIEW,
        "OPTIONS": VIEW,
    }

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # 401 first: an anonymous caller learns nothing, not even a 405
        if request.method not in view.allowed_methods:
            return True  # nothing to guard: the view answers 405
        action_perms = getattr(view, "action_permissions", {}).get(getattr(view, "action", None))
        if action_perms is None:
            return super().has_permission(request, view)
        user = request.user
        return bool(user and user.is_authenticated and user.has_perms(action_perms))
