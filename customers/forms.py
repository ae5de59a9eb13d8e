"""Forms for the customer pages: the list filters and the create/edit form.

They only parse and validate input; saving goes through `customers.services`.
"""

from __future__ import annotations

from django import forms

from .models import RANK_EXACT, RANK_OTHER, Customer, CustomerQuerySet
from .services import EDITABLE_FIELDS


class CustomerFilterForm(forms.Form):
    """The list's GET parameters. Invalid values are ignored rather than refused."""

    q = forms.CharField(
        label="Search",
        required=False,
        widget=forms.SearchInput(attrs={"placeholder": "Name, email, company or id"}),
    )
    # Free text on purpose: a list of distinct countries would scan millions of rows.
    country = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "e.g. Germany"}),
    )
    edited = forms.ChoiceField(
        label="Edited by hand",
        required=False,
        choices=[("", "Any"), ("yes", "Yes"), ("no", "No")],
    )
    # Bounded by the primary key's type (BigAutoField) so the database never overflows.
    after = forms.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput
    )
    # With a search, the rank of the last row shown: pages go best matches first.
    rank = forms.IntegerField(
        required=False, min_value=RANK_EXACT, max_value=RANK_OTHER, widget=forms.HiddenInput
    )
    # Rows already shown above this page, for the status line only.
    shown = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def filter_queryset(self, queryset: CustomerQuerySet) -> CustomerQuerySet:
        """Country and edited; the search itself comes with its ranked page (search_page)."""
        data = self.cleaned_data
        if data.get("country"):
            queryset = queryset.in_country(data["country"])
        if data.get("edited"):
            queryset = queryset.edited(data["edited"] == "yes")
        return queryset

    def export_queryset(self) -> CustomerQuerySet:
        """Every customer the list shows with these filters, unranked (an export needs no rank)."""
        customers = self.filter_queryset(Customer.objects.all())
        if self.cleaned_data.get("q"):
            customers = customers.search(self.cleaned_data["q"])
        return customers

    def cursor(self) -> tuple[int, int] | None:
        """Where the page starts: the (rank, id) of the last row shown before it."""
        after = self.cleaned_data.get("after")
        if after is None:
            return None
        rank = self.cleaned_data.get("rank")
        return (RANK_EXACT if rank is None else rank, after)

    def active_filters(self) -> dict[str, str]:
        """The filters in effect, to carry into the next page's URL."""
        return {
            name: self.cleaned_data[name]
            for name in ("q", "country", "edited")
            if self.cleaned_data.get(name)
        }


class CustomerForm(forms.ModelForm):
    required_css_class = "required"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    class Meta:
        model = Customer
        fields = list(EDITABLE_FIELDS)
        widgets = {
            "subscription_date": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
            # Text inputs with a phone keypad: imported numbers come in every format.
            "phone_1": forms.TextInput(attrs={"inputmode": "tel"}),
            "phone_2": forms.TextInput(attrs={"inputmode": "tel"}),
            "website": forms.TextInput(attrs={"inputmode": "url"}),
            "about": forms.Textarea(attrs={"rows": 8}),
        }
