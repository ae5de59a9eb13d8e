"""The Customer: one row per "Customer Id" of the imported CSV files."""

from __future__ import annotations

from functools import reduce
from operator import and_, or_

from django.conf import settings
from django.db import connections, models
from django.db.models import ExpressionWrapper, F, Q, Value
from django.db.models.functions import Concat, Trim

from .search_index import (
    MIN_WORD,
    anchored_match,
    full_name_match,
    match_expression,
    rowids_matching,
    search_index_ready,
)

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
# Search matches a word anywhere in these, and at the start of the customer id.
CONTAINS_FIELDS = ("first_name", "last_name", "email", "company")
MAX_SEARCH_WORDS = 8


# Search results come in ranks, best first; each rank is paged newest first.
RANK_EXACT, RANK_FULL_NAME, RANK_OTHER = 0, 1, 2
# Shorter queries are not ranked: too common to look up cheaply, and rarely a lookup.
MIN_RANKED = 4
RANK_LABELS = {RANK_EXACT: "exact match", RANK_FULL_NAME: "name match", RANK_OTHER: ""}


def search_words(q: str) -> list[str]:
    return q.split()[:MAX_SEARCH_WORDS]


def word_matches(word: str) -> Q:
    """A search word: any part of a name, the company or the email, or the start of the id.

    Ids are looked up whole or by their first characters; matching them anywhere
    would cost a trigram index over random strings for matches nobody asks for.
    """
    return reduce(or_, (Q(**{f"{field}__icontains": word}) for field in CONTAINS_FIELDS)) | Q(
        customer_id__istartswith=word
    )


def full_name_candidates(words: list[str], phrase: str) -> Q:
    """A narrow condition that every customer whose full name equals `phrase` meets.

    The full name is "first last" trimmed: equal to the phrase only if the first name
    starts with its first word and the last name ends with its last word, or if one of
    them is empty and the other equals the whole phrase.
    """
    return (
        (Q(first_name__istartswith=words[0]) & Q(last_name__iendswith=words[-1]))
        | Q(first_name__iexact=phrase)
        | Q(last_name__iexact=phrase)
    )


class CustomerQuerySet(models.QuerySet):
    def search(self, q: str, *, narrow: bool = True) -> CustomerQuerySet:
        """Every word must match (`word_matches`, case-insensitive) a name, email, company or id.

        On PostgreSQL a trigram GIN index over UPPER(field) serves the `icontains`
        lookups and a text_pattern_ops btree the id's prefix (migration 0006). On
        SQLite the FTS5 trigram index (search_index.py) first narrows to the rows
        containing every word of 3+ characters anywhere; the same conditions then
        decide, so both give exactly the scan's results.
        `narrow=False` leaves the narrowing to the caller (a better one).
        """
        words = search_words(q)
        if not words:
            return self
        qs = self.filter(reduce(and_, (word_matches(word) for word in words)))
        match = match_expression(words)
        if narrow and match is not None and search_index_ready(connections[self.db]):
            qs = qs.filter(id__in=rowids_matching(match))
        return qs

    def search_page(
        self, q: str, cursor: tuple[int, int] | None, size: int
    ) -> list[tuple[int, Customer]]:
        """One keyset page of `search(q)`, best matches first, as (rank, customer) pairs.

        Ranks: the customer id or the email equals the query, then the full name
        (first and last) equals it, then every other match; newest first within a
        rank. The cursor is the (rank, id) of the last row shown, so pages never
        repeat or skip a row, and each rank is its own keyset query: the best
        matches are few, and the rest stop after one page like the plain list.
        Queries shorter than 4 characters, or without a word of 3+, are not ranked.
        Returns up to `size + 1` rows: the extra one tells a next page exists.
        """
        phrase = " ".join(q.split())
        words = search_words(q)
        if len(phrase) < MIN_RANKED or all(len(word) < MIN_WORD for word in words):
            # The start of typing, not a lookup: newest first as the plain list, without
            # a pass over every match (or every row) to look for equal ids or names.
            return [(RANK_OTHER, c) for c in self.search(q).page_after(cursor and cursor[1], size)]
        exact = Q(customer_id__iexact=phrase) | Q(email__iexact=phrase)
        full_name = Q(search_full_name__iexact=phrase)
        ranks = {
            RANK_EXACT: exact,
            RANK_FULL_NAME: full_name & ~exact,
            RANK_OTHER: ~exact & ~full_name,
        }
        # An id, email or full name equal to the query contains each of its words, so the
        # best ranks need no search filter: only a way to the few rows that start like
        # the query (an index), instead of a pass over every match of a common word.
        matches = dict.fromkeys(ranks, self.search(q))
        if search_index_ready(connections[self.db]):
            # Every email has an @ (both import and forms validate it): without one the
            # query can only equal an id, and emails starting like it need no look.
            exact_columns = ("customer_id", "email") if "@" in phrase else ("customer_id",)
            matches[RANK_EXACT] = self.filter(
                id__in=rowids_matching(anchored_match(exact_columns, phrase))
            )
            name_anchor = full_name_match(words, phrase)
            if name_anchor is not None:
                matches[RANK_FULL_NAME] = self.filter(id__in=rowids_matching(name_anchor))
        else:
            # PostgreSQL's trigram index serves the equalities and the prefix and suffix
            # matches (SQLite without FTS5 scans either way).
            matches[RANK_EXACT] = self
            matches[RANK_FULL_NAME] = self.filter(full_name_candidates(words, phrase))
        full_name_expr = Trim(Concat("first_name", Value(" "), "last_name"))
        start_rank, after_id = cursor if cursor else (RANK_EXACT, None)
        rows: list[tuple[int, Customer]] = []
        for rank, condition in ranks.items():
            if rank < start_rank:
                continue
            candidates = matches[rank].alias(search_full_name=full_name_expr)
            found = candidates.filter(condition).page_after(
                after_id if rank == start_rank else None,
                size - len(rows),
                # An id, an email or a full name equals the query in a few rows: find them
                # by index and sort those, never walk the table newest first looking for
                # them (seconds at 4 M rows when there are none).
                few=rank != RANK_OTHER,
            )
            rows += [(rank, customer) for customer in found]
            if len(rows) > size:
                break
        return rows[: size + 1]

    def edited(self, edited: bool) -> CustomerQuerySet:
        return self.filter(manually_edited_at__isnull=not edited)

    def in_country(self, country: str) -> CustomerQuerySet:
        return self.filter(country=country)

    def page_after(self, after_id: int | None, size: int, *, few: bool = False) -> list[Customer]:
        """One keyset page, newest first; never OFFSET, never COUNT(*).

        Returns up to `size + 1` rows: the extra one tells the caller a next page exists.
        `few`: the filter matches a handful of rows; ordering by `id + 0` keeps the
        planner from scanning the primary key backwards in search of them.
        """
        newest = ExpressionWrapper(F("id") + 0, output_field=models.BigIntegerField())
        qs = self.order_by(newest.desc() if few else "-id")
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
    # No index of its own: search (trigram, migration 0006) serves every email lookup.
    email = models.EmailField(max_length=254)
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
    # The import that inserted the row (a plain id: customers never depend on imports), so
    # that undoing it finds what it created without a list of ids per import.
    created_by_import = models.BigIntegerField(null=True, blank=True, editable=False)

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


class DeferredIndex(models.Model):
    """A secondary index of the customers table dropped for a bulk load, until rebuilt.

    See customers/deferred_indexes.py (on SQLite one record stands for the search
    index's triggers). Recorded in the transaction that drops the index, so a
    crash can never lose an index: whoever finds a record rebuilds it.
    """

    name = models.CharField(max_length=63, unique=True)
    definition = models.TextField()
    deferred_by = models.CharField(max_length=100, blank=True)
    deferred_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


# --- Background exports (customers/exports.py) -------------------------------------------------
class ExportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


EXPORT_ACTIVE_STATUSES = (ExportStatus.QUEUED, ExportStatus.RUNNING)
EXPORT_CHUNK = 2000  # rows per query, per piece of streamed text, per export checkpoint


class CustomerExportQuerySet(models.QuerySet):
    def active(self) -> CustomerExportQuerySet:
        return self.filter(status__in=EXPORT_ACTIVE_STATUSES)

    def visible_to(self, user) -> CustomerExportQuerySet:
        """A person's own exports; everyone's with `view_all_exports` (administrators)."""
        if user.has_perm("customers.view_all_exports"):
            return self
        return self.filter(requested_by=user.pk)


class CustomerExport(models.Model):
    """A CSV export of the customers written to a file by the worker (customers/exports.py).

    `filters` are the list's (q, country, edited). The checkpoint is `last_pk` (the
    last customer written), `rows_written` and `bytes_written` (the file's length
    then); it is committed after the bytes are on disk, so a resumed run cuts the
    file back to `bytes_written` and goes on after `last_pk`.
    """

    filters = models.JSONField(default=dict, blank=True)
    bom = models.BooleanField("byte order mark", default=False)
    chunk_size = models.PositiveIntegerField(default=EXPORT_CHUNK)
    status = models.CharField(
        max_length=16, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    rows_total = models.BigIntegerField(
        null=True, blank=True, help_text="Counted once when the export starts: the percent's base."
    )
    rows_written = models.BigIntegerField(default=0)
    last_pk = models.BigIntegerField(default=0)
    bytes_written = models.BigIntegerField(default=0)
    file_path = models.CharField(max_length=255, blank=True, help_text="Inside MEDIA_ROOT.")
    file_name = models.CharField(max_length=100, help_text="The download's name.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    lease = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    file_deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="The file expired (CUSTOMER_EXPORT_KEEP_DAYS)."
    )

    objects = CustomerExportQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        permissions = [("view_all_exports", "Can see and download everyone's exports")]
        indexes = [models.Index(fields=["status", "id"], name="customer_export_status")]

    def __str__(self) -> str:
        return f"Export #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in EXPORT_ACTIVE_STATUSES

    @property
    def is_downloadable(self) -> bool:
        return self.status == ExportStatus.COMPLETED and self.file_deleted_at is None

    @property
    def percent(self) -> float:
        if self.status == ExportStatus.COMPLETED:
            return 100.0
        if not self.rows_total:
            return 0.0
        # Rows added since the count can pass it: never show 100 % before the end.
        return min(99.9, 100.0 * self.rows_written / self.rows_total)

    def describe_filters(self) -> str:
        parts = []
        if self.filters.get("q"):
            parts.append(f"search “{self.filters['q']}”")
        if self.filters.get("country"):
            parts.append(f"country {self.filters['country']}")
        if self.filters.get("edited"):
            parts.append("edited by hand" if self.filters["edited"] == "yes" else "not edited")
        return ", ".join(parts) or "all customers"
