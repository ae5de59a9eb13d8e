"""Create a person's account with one role, and print a generated password once.

The first administrator (`ensure_admin`, run by `make run`) is a superuser; everyone
else gets a role: Viewer, Editor, Importer or Administrator (who is also staff, for
the admin site). Roles can be changed later in the admin (Users -> Groups).
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from imports.roles import ROLES, STAFF_ROLES


class Command(BaseCommand):
    help = "Create a user with a role (a group) and a random password."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--role", required=True, help="Viewer, Editor, Importer or Administrator"
        )
        parser.add_argument("--email", default="")

    def handle(self, *args, username: str, role: str, email: str, **options):
        User = get_user_model()
        group = Group.objects.filter(name__iexact=role, name__in=ROLES).first()
        if group is None:
            raise CommandError(f"No role named {role!r}; the roles are: {', '.join(ROLES)}.")
        if User.objects.filter(username=username).exists():
            raise CommandError(f"A user named {username!r} already exists.")
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user = User.objects.create_user(
                username=username,
                email=email,
                password=password,
                is_staff=group.name in STAFF_ROLES,
            )
            user.groups.add(group)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created {username} with the role {group.name} (password shown once):\n"
                f"  username: {username}\n  password: {password}\n"
            )
        )
