"""Create the first administrator account, once, with a generated password.

`make run` calls this on every start: when a superuser already exists it does
nothing, so the password is printed exactly once and never a fixed default.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create an administrator with a random password if no superuser exists."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="admin@example.com")

    def handle(self, *args, username: str, email: str, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            if options["verbosity"] > 1:
                self.stdout.write("An administrator already exists; nothing to do.")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(
            self.style.SUCCESS(
                "\nCreated administrator account (shown once, keep it safe):\n"
                f"  username: {username}\n  password: {password}\n"
                "Change it with: .venv/bin/python manage.py changepassword "
                f"{username}\n"
            )
        )
