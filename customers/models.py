"""The Customer: one row per "Customer Id" of the imported CSV files."""

from __future__ import annotations

from functools import reduce
from operator import and_, or_

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Trim

# The CSV format, one entry per column a CSV import writes, in file order: the model
# field and its header label. The export writes these labels (after a running "Index",
# which the import ignores), so an exported file imports again as it is.
CSV_LABELS: dict[str, str] = {
    "customer_id": "Customer Id",
    "first_name": "First Name",
    "last_name": "Last Name",
    "company": "Company",
    "city": "City",
    "country": "Country",
    "phone_1": "Phone 1",
    "phone_2": "Phone 2",
    "email": "Email",
    "subscription_date": "Subscription Date",
    "website": "Website",
    "about": "About Customer",
}
CSV_HEADER: tuple[str, ...] = ("Index", *CSV_LABELS.values())
# Fields a CSV import writes (in file order). A re-import compares exactly these.
IMPORTED_FIELDS: tuple[str, ...] = tuple(CSV_LABELS)
SEARCH_FIELDS = ("first_name", "last_name", "email", "company", "customer_id")


class CustomerQuerySet(models.QuerySet):
    def search(self, q: str) -> CustomerQuerySet:
        """Every word must match one of the name, email, company or id fields.

        On PostgreSQL a trigram GIN index over UPPER(field) serves these
        `icontains` lookups (migration 0002), so search stays fast at millions of rows.
        """
        words = q.split()[:8]
        if not words:
            return self
        per_word = [
            reduce(or_, (Q(**{f"{field}__icontains": word}) for field in SEARCH_FIELDS))
            for word in words
        ]
        return self.filter(reduce(and_, per_word))

    def edited(self, edited: bool) -> CustomerQuerySet:
        return self.filter(manually_edited_at__isnull=not edited)

    def in_country(self, country: str) -> CustomerQuerySet:
        return self.filter(country=country)

    def page_after(self, after_id: int | None, size: int) -> list[Customer]:
        """One keyset page, newest first; never OFFSET, never COUNT(*).

        Returns up to `size + 1` rows: the extra one tells the caller a next page exists.
        """
        qs = self.order_by("-id")
        if after_id is not None:
            qs = qs.filter(id__lt=after_id)
        return list(qs[: size + 1])


class Customer(models.Model):
    customer_id = models.CharField("customer id", max_length=64, unique=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    company = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=100, blank=True)
    phone_1 = models.CharField("phone 1", max_length=50, blank=True)
    phone_2 = models.CharField("phone 2", max_length=50, blank=True)
    email = models.EmailField(max_length=254, db_index=True)
    subscription_date = models.DateField(null=True, blank=True)
    website = models.CharField(max_length=255, blank=True)
    about = models.TextField("about customer", blank=True)
    manually_edited_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Set when a person creates or changes the customer; imports then leave it alone.",
    )
    manually_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who made the last change by hand.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        # Taking every customer out at once is more than reading them one page at a time.
        permissions = [("export_customer", "Can export customers as CSV")]
        indexes = [
            # Country filter walks newest first without a sort.
            models.Index(fields=["country", "-id"], name="customer_country_id"),
            # "Edited by hand" is a small minority: a partial index keeps it cheap.
            models.Index(
                fields=["-id"],
                condition=Q(manually_edited_at__isnull=False),
                name="customer_edited_id",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(customer_id="") & ~Q(email=""),
                name="customer_id_and_email_not_empty",
            ),
            models.CheckConstraint(
                condition=Q(customer_id=Trim("customer_id")),
                name="customer_id_trimmed",
            ),
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return f"{name or self.email} ({self.customer_id})"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()
