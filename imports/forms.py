"""Forms that start an import: they only collect input; `imports.services` decides."""

from __future__ import annotations

from django import forms
from django.conf import settings

from .uploads import too_large_message

OVERWRITE_MANUAL_HELP = (
    "Customers someone edited by hand are normally left alone (counted as skipped). "
    "Tick this to overwrite them with the file's values."
)


# The browser refuses an oversized file before sending a byte; the server checks anyway.
CHECK_SIZE_JS = (
    "this.setCustomValidity(this.files.length && this.files[0].size > +this.dataset.maxBytes"
    " ? this.dataset.tooLarge : ''); this.reportValidity()"
)


class ImportUploadForm(forms.Form):
    file = forms.FileField(label="CSV file")
    overwrite_manual = forms.BooleanField(
        label="Import over manual edits", required=False, help_text=OVERWRITE_MANUAL_HELP
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["file"].widget = forms.FileInput(
            attrs={
                "accept": ".csv,.tsv,.txt,.gz,.zip,text/csv",
                "data-max-bytes": settings.IMPORT_MAX_UPLOAD_BYTES,
                "data-too-large": too_large_message(),
                "onchange": CHECK_SIZE_JS,
            }
        )


class ImportFolderForm(forms.Form):
    """A file of IMPORT_DIR by name; which names are allowed is the service's rule."""

    name = forms.CharField(label="File", max_length=1024)
    overwrite_manual = forms.BooleanField(
        label="Import over manual edits", required=False, help_text=OVERWRITE_MANUAL_HELP
    )
