"""Reading real exports: delimiters, encodings, gzip and zip, detection, and resuming in each."""

from __future__ import annotations

import csv
import gzip
import io
import signal
import zipfile

import pytest
from django.core.management import CommandError, call_command

from customers.models import Customer
from imports import services
from imports.dialect import (
    DetectionError,
    Dialect,
    detect,
    detect_from_head,
    parse_delimiter,
    parse_encoding,
)
from imports.models import ImportState, ImportStatus
from imports.reader import CsvSource, FatalImportError, Record, sniff
from imports.tests.helpers import HEADER, row
from imports.tests.test_engine import run_file
from imports.tests.test_run_import import final_state, manage

BOM = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}
# Names each encoding can hold (Windows-1252 and Latin-1 have no Ł or ź).
NAMES = {
    "utf-8": ("Müller", "Zoë", "Łódź"),
    "utf-16-le": ("Müller", "Zoë", "Łódź 😀"),
    "utf-16-be": ("Müller", "Zoë", "Łódź"),
    "cp1252": ("Müller", "Zoë", "Café €"),
    "latin-1": ("Müller", "Zoë", "Ærø"),
}


def rows_for(encoding: str, count: int = 3) -> list[list[str]]:
    first, last, city = NAMES[encoding]
    return [
        row(
            n,
            first_name=first,
            last_name=f"{last}{n}",
            city=city,
            about_customer='line one; a|b\tc\nline two, "quoted"' if n % 2 else "plain",
        )
        for n in range(1, count + 1)
    ]


def encode(rows, *, delimiter=",", encoding="utf-8", newline="\r\n", header=HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return BOM.get(encoding, b"") + out.getvalue().encode(encoding)


def read_all(data: bytes, dialect: Dialect, chunk_size: int = 1 << 18, offset=None, line=None):
    source = CsvSource(
        io.BytesIO(data), max_row_bytes=64 * 1024, chunk_size=chunk_size, dialect=dialect
    )
    header = source.read_header()
    start = (header.data_offset, header.data_line) if offset is None else (offset, line)
    return header, list(source.records(*start))


# --- The reader -------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", list(NAMES))
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_each_delimiter_and_encoding_reads_exactly_and_resumes_at_every_record(delimiter, encoding):
    rows = rows_for(encoding)
    data = encode(rows, delimiter=delimiter, encoding=encoding)
    dialect = Dialect(delimiter, encoding)
    for chunk_size in (1, 2, 3, 5, 64, 1 << 18):  # reads that cut characters and line breaks
        header, records = read_all(data, dialect, chunk_size)
        assert header.names == HEADER
        assert [r.fields for r in records] == rows
        assert records[-1].end_offset == len(data)
        assert [r.line for r in records] == [2, 4, 5]  # row 1 has a quoted line break
        for done, record in enumerate(records):  # a checkpoint after each record
            _, rest = read_all(data, dialect, chunk_size, record.end_offset, record.end_line)
            assert [r.fields for r in rest] == rows[done + 1 :]


@pytest.mark.parametrize(
    "encoding, bad, reason",
    [
        ("utf-8", b"\xe9", "row is not valid UTF-8 (byte 0xe9"),
        ("cp1252", b"\x81", "row is not valid Windows-1252 (byte 0x81"),
        ("utf-16-le", b"\x00\xd8", "row is not valid UTF-16 LE (an unpaired surrogate"),
        ("utf-16-be", b"\xd8\x00", "row is not valid UTF-16 BE (an unpaired surrogate"),
    ],
)
def test_bytes_invalid_in_the_encoding_reject_their_row_only(encoding, bad, reason):
    def text(value: str) -> bytes:
        return value.encode(encoding)

    data = (
        BOM.get(encoding, b"")
        + text("Customer Id;Email;Last Name\nID1;a@example.com;Zoë\nID2;b@example.com;Le")
        + bad
        + text("e\nID3;c@example.com;Müller\n")
    )
    for chunk_size in (1, 7, 1 << 18):
        _, records = read_all(data, Dialect(";", encoding), chunk_size=chunk_size)
        assert [type(r).__name__ for r in records] == ["Record", "BadRecord", "Record"]
        assert records[1].line == 3
        assert records[1].reason.startswith(reason), records[1].reason
        assert records[1].raw.startswith("ID2;b@example.com;Le\ufffd")
        assert [r.fields[2] for r in (records[0], records[2])] == ["Zoë", "Müller"]
        assert records[-1].end_offset == len(data)


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_malformed_and_too_large_rows_are_measured_with_the_delimiter(delimiter, encoding):
    d = delimiter
    lines = [
        d.join(["Customer Id", "Email", "About"]),
        d.join(["ID1", "a@example.com", '"ok, fine"']),
        d.join(['"ID2"x', "b@example.com", f'"quoted{d} then\nmore"']),
        d.join(["ID3", "c@example.com", '"' + "x" * 70_000 + '\nstill quoted"']),
        d.join(["ID4", "d@example.com", f'"Zoë{d}Müller"']),
    ]
    data = BOM.get(encoding, b"") + "\n".join(lines).encode(encoding) + "\n".encode(encoding)
    _, records = read_all(data, Dialect(delimiter, encoding), chunk_size=1000)
    assert [(r.line, type(r).__name__) for r in records] == [
        (2, "Record"),
        (3, "BadRecord"),
        (5, "BadRecord"),
        (7, "Record"),
    ]
    assert "malformed CSV quoting" in records[1].reason
    assert "too large" in records[2].reason
    assert records[3].fields == ["ID4", "d@example.com", f"Zoë{d}Müller"]
    assert records[3].end_offset == len(data)


def test_a_utf16_file_cut_inside_a_character_rejects_its_last_row():
    data = (
        encode(rows_for("utf-16-le", 2), encoding="utf-16-le", newline="\n")
        + "9,".encode("utf-16-le")[:-1]
    )
    _, records = read_all(data, Dialect(",", "utf-16-le"), chunk_size=3)
    assert [r.fields[1] for r in records if isinstance(r, Record)] == ["ID1", "ID2"]
    assert "ends inside a UTF-16 LE character" in records[-1].reason
    assert records[-1].end_offset == len(data)


def test_a_utf16_file_read_as_utf8_says_so():
    data = encode([row(1)], encoding="utf-16-le")
    with pytest.raises(FatalImportError, match=r"UTF-16 LE encoded .* choose UTF-16 LE"):
        read_all(data, Dialect())


def test_sniff_accepts_compressed_and_utf16_files_and_refuses_binary():
    for head in (b"\x1f\x8b\x08", b"PK\x03\x04", b"\xff\xfeI\x00", b"\xfe\xff\x00I", b"a,b\n"):
        sniff(head)
    for head, words in (
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n", "PNG image"),
        (b"%PDF-1.7\n", "PDF document"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1", "old Excel"),
        (b"I\x00n\x00d\x00", "binary data"),  # UTF-16 without a byte order mark
    ):
        with pytest.raises(FatalImportError, match=words):
            sniff(head)


# --- Detection -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, dialect, notes",
    [
        (
            encode(rows_for("utf-16-le"), delimiter="\t", encoding="utf-16-le"),
            Dialect("\t", "utf-16-le"),
            ("UTF-16 LE (byte order mark)", "tab (detected from the header and 3 records)"),
        ),
        (
            encode(rows_for("utf-16-be"), delimiter="|", encoding="utf-16-be"),
            Dialect("|", "utf-16-be"),
            ("UTF-16 BE (byte order mark)", "pipe (detected from the header and 3 records)"),
        ),
        (
            b"\xef\xbb\xbf" + encode(rows_for("utf-8"), delimiter=";"),
            Dialect(";", "utf-8"),
            ("UTF-8 (byte order mark)", "semicolon (detected from the header and 3 records)"),
        ),
        (
            encode(rows_for("utf-8"), delimiter=";"),
            Dialect(";", "utf-8"),
            ("UTF-8 (detected)", "semicolon (detected from the header and 3 records)"),
        ),
        (
            encode(rows_for("cp1252", 40), delimiter=";", encoding="cp1252"),
            Dialect(";", "cp1252"),
            ("Windows-1252 (detected)", "semicolon (detected from the header and 40 records)"),
        ),
        (
            encode([row(1, city="Cr\x81é\x9d")], encoding="latin-1"),
            Dialect(",", "latin-1"),
            None,
        ),
        (
            encode([], header=["Customer Id", "Email"]),
            Dialect(),
            ("UTF-8 (detected: plain ASCII so far)", "comma (detected from the header)"),
        ),
        (b"\n\n", Dialect(), None),
        (
            b"Customer Id\nID1\n",
            Dialect(),
            (
                "UTF-8 (detected: plain ASCII so far)",
                "comma (the default: the header has a single column)",
            ),
        ),
    ],
    ids=[
        "utf16le-tab",
        "utf16be-pipe",
        "utf8-bom",
        "utf8",
        "cp1252",
        "latin1",
        "header",
        "blank",
        "one-column",
    ],
)
def test_detect_from_head(data, dialect, notes):
    detection = detect_from_head(data, complete=True)
    assert detection.dialect == dialect
    if notes:
        assert detection.notes == notes
    if dialect.encoding == "latin-1":
        assert detection.notes[0].startswith("Latin-1")


def test_detection_reads_only_whole_lines_of_a_long_file():
    rows = [row(n, first_name="Zoë") for n in range(1, 400)]
    data = encode(rows, delimiter="|")
    detection = detect_from_head(data[:9000], complete=False)
    assert detection.dialect == Dialect("|")
    assert detection.notes[1] == "pipe (detected from the header and 50 records)"


def test_a_delimiter_that_cannot_be_told_names_what_was_tried_and_how_to_set_it():
    data = b"Customer Id,Email;Name\nID1;a@example.com;Ann;x\nID2,b@example.com,Bo,y\n"
    with pytest.raises(DetectionError) as error:
        detect_from_head(data, complete=True)
    message = str(error.value)
    for words in ("comma, semicolon, tab or pipe", "--delimiter", "review page"):
        assert words in message
    assert isinstance(error.value, FatalImportError)


def test_binary_text_is_no_encoding():
    with pytest.raises(DetectionError, match="Cannot tell the file's text encoding"):
        detect_from_head(bytes(range(1, 32)) * 50 + b"\xff\xfe\xfa", complete=True)


def test_given_parts_are_not_detected():
    data = b"Customer Id:Email\nID1:a@example.com\n"
    detection = detect_from_head(data, complete=True, delimiter=";", encoding="cp1252")
    assert detection.dialect == Dialect(";", "cp1252")
    assert detection.notes == ("Windows-1252 (as chosen)", "semicolon (as chosen)")


def test_names_for_delimiters_and_encodings():
    for value, delimiter in (
        ("comma", ","),
        ("Semicolon", ";"),
        ("tab", "\t"),
        ("\\t", "\t"),
        ("\t", "\t"),
        ("|", "|"),
        ("pipe", "|"),
    ):
        assert parse_delimiter(value) == delimiter
    for value, encoding in (
        ("UTF8", "utf-8"),
        ("windows-1252", "cp1252"),
        ("latin1", "latin-1"),
        ("ISO-8859-1", "latin-1"),
        ("utf-16le", "utf-16-le"),
        ("UTF_16_BE", "utf-16-be"),
    ):
        assert parse_encoding(value) == encoding
    with pytest.raises(ValueError, match="comma, semicolon, tab or pipe"):
        parse_delimiter(":")
    with pytest.raises(ValueError, match="utf-8, utf-16-le"):
        parse_encoding("ebcdic")


# --- Compressed files ---------------------------------------------------------------------------
def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def big_rows(count: int = 120) -> list[list[str]]:
    return [
        row(n, first_name="Zoë", city="Łódź", about_customer=f"about {n}\nmore, {'x' * 300}")
        for n in range(1, count + 1)
    ]


def test_detect_reads_inside_gzip_and_zip(tmp_path):
    plain = encode(big_rows(), delimiter=";")
    (tmp_path / "a.csv.gz").write_bytes(gzip_bytes(plain))
    (tmp_path / "a.zip").write_bytes(zip_bytes({"export/customers.csv": plain, "README": b"x"}))
    gz = detect(tmp_path / "a.csv.gz")
    assert gz.dialect == Dialect(";", "utf-8", "gzip")
    assert gz.notes[0] == "gzip-compressed (from its first bytes)"
    zipped = detect(tmp_path / "a.zip")
    assert zipped.dialect == Dialect(";", "utf-8", "zip")
    assert zipped.notes[0] == "zip archive, reading export/customers.csv"


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["gzip", "zip"])
def test_a_compressed_file_imports_like_the_plain_one(tmp_path, kind):
    plain = encode(big_rows(), delimiter="\t", encoding="utf-16-le")
    (tmp_path / "plain.tsv").write_bytes(plain)
    expected = run_file(tmp_path / "plain.tsv", batch_size=25)
    assert expected.status == ImportStatus.COMPLETED, expected.error
    snapshot = sorted(Customer.objects.values_list("customer_id", "first_name", "city", "about"))
    Customer.objects.all().delete()
    name, data = (
        ("plain.tsv.gz", gzip_bytes(plain))
        if kind == "gzip"
        else ("plain.zip", zip_bytes({"plain.tsv": plain}))
    )
    (tmp_path / name).write_bytes(data)
    state = run_file(tmp_path / name, batch_size=25)
    assert state.status == ImportStatus.COMPLETED, state.error
    assert (state.delimiter, state.encoding, state.compression) == ("\t", "utf-16-le", kind)
    assert state.bytes_processed == len(plain) == expected.bytes_processed
    assert state.source_bytes_processed == state.file_size == len(data)
    assert state.rows_created == 120
    assert (
        sorted(Customer.objects.values_list("customer_id", "first_name", "city", "about"))
        == snapshot
    )
    assert snapshot[0][1:3] == ("Zoë", "Łódź")


@pytest.mark.django_db
def test_progress_of_a_compressed_import_is_in_stored_bytes(tmp_path):
    data = gzip_bytes(encode(big_rows()))
    (tmp_path / "a.csv.gz").write_bytes(data)
    seen = []
    state, _ = services.import_for_command(
        tmp_path / "a.csv.gz", restart=True, overwrite_manual=False, batch_size=20
    )
    from imports.engine import run_import
    from imports.tests.test_engine import WORKER

    state, lease = services.import_claim(state, WORKER)
    run_import(state, lease, on_progress=lambda s: seen.append((s.percent, s.bytes_processed)))
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and percents[-1] == 100.0
    # While running, the percentage is of the compressed file, not of the decompressed bytes.
    running = seen[:-1]
    assert all(p <= 100.0 for p, _ in running)
    assert any(done > len(data) for _, done in running)  # decompressed is larger than stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    "members, words",
    [
        ({"a.csv": b"x", "b.CSV": b"y", "notes.pdf": b"z"}, "holds 2 CSV files (a.csv, b.CSV)"),
        ({"notes.pdf": b"z", "img/logo.png": b"p"}, "holds no CSV file"),
        ({}, "holds no CSV file (.csv, .tsv or .txt); it holds: nothing"),
        (
            {"[Content_Types].xml": b"<x/>", "xl/workbook.xml": b"<w/>"},
            "spreadsheet (an Office zip archive), not a CSV file",
        ),
    ],
    ids=["two-csvs", "no-csv", "empty", "xlsx"],
)
def test_a_zip_must_hold_exactly_one_csv(import_dir, members, words):
    (import_dir / "export.zip").write_bytes(zip_bytes(members))
    with pytest.raises(services.ImportRefused) as refused:
        services.import_enqueue_path("export.zip")
    assert words in refused.value.message
    assert refused.value.message.startswith("export.zip: ")
    if len(members) == 3:
        assert "notes.pdf" not in refused.value.message  # names the CSVs it found
    elif members and "xl/workbook.xml" not in members:
        assert "notes.pdf, img/logo.png" in refused.value.message
    assert not ImportState.objects.exists()


@pytest.mark.django_db
def test_a_damaged_zip_is_refused(import_dir):
    (import_dir / "broken.zip").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(services.ImportRefused, match="zip archive that cannot be read"):
        services.import_enqueue_path("broken.zip")


@pytest.mark.django_db
@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_gzip_fails_the_import_and_keeps_the_rows_before(tmp_path, damage):
    data = gzip_bytes(encode(big_rows(300)))
    if damage == "truncated":
        broken = data[: len(data) * 2 // 3]
    else:
        middle = len(data) * 2 // 3
        broken = data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 64])
        broken += data[middle + 64 :]
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(broken)
    state = run_file(path, batch_size=20)
    assert state.status == ImportStatus.FAILED
    assert state.error.startswith("The gzip file is damaged or cut short after"), state.error
    assert "\n" not in state.error and state.error_kind == "file"
    assert 0 < state.rows_processed < 300
    assert Customer.objects.count() == state.rows_created == state.rows_processed


# --- Enqueue and the command line ----------------------------------------------------------------
@pytest.mark.django_db
def test_enqueue_stores_the_detected_dialect_or_the_one_given(import_dir):
    (import_dir / "export.txt").write_bytes(
        encode(rows_for("cp1252"), delimiter=";", encoding="cp1252")
    )
    state = services.import_enqueue_path("export.txt")
    assert state.dialect == Dialect(";", "cp1252", "")
    ImportState.objects.all().delete()
    given = services.import_enqueue_path("export.txt", dialect=Dialect(";", "latin-1"))
    assert given.dialect == Dialect(";", "latin-1")


@pytest.mark.django_db
def test_the_folder_lists_every_readable_kind(import_dir):
    for name in ("a.csv", "b.tsv", "c.txt", "d.csv.gz", "e.gz", "f.zip", "g.xlsx", "h.json"):
        (import_dir / name).write_bytes(b"x")
    assert sorted(f.name for f in services.import_dir_files()) == [
        "a.csv",
        "b.tsv",
        "c.txt",
        "d.csv.gz",
        "e.gz",
        "f.zip",
    ]


@pytest.mark.django_db
def test_an_undetectable_file_is_refused_with_how_to_set_it(import_dir):
    (import_dir / "odd.csv").write_bytes(b"Customer Id,Email;Name\nID1;a@b.example;Ann;x\n")
    with pytest.raises(services.ImportRefused, match=r"odd\.csv: Cannot tell the delimiter"):
        services.import_enqueue_path("odd.csv")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "flags, dialect",
    [
        (["--delimiter", "semicolon"], Dialect(";", "cp1252")),
        (["--delimiter", ";", "--encoding", "latin-1"], Dialect(";", "latin-1")),
        (["--delimiter", "\\t"], None),
    ],
)
def test_run_import_flags_override_detection(tmp_path, flags, dialect):
    rows = rows_for("cp1252")
    path = tmp_path / "export.csv"
    path.write_bytes(encode(rows, delimiter=";", encoding="cp1252"))
    if dialect is None:  # read with the wrong delimiter: the header has no Customer Id column
        with pytest.raises(CommandError, match="Missing required columns"):
            call_command("run_import", str(path), *flags, verbosity=0)
        assert ImportState.objects.get().delimiter == "\t"
        return
    call_command("run_import", str(path), *flags, verbosity=0)
    state = ImportState.objects.get()
    assert state.status == ImportStatus.COMPLETED and state.dialect == dialect
    # The same byte 0x80 is the euro sign in Windows-1252, a control character in Latin-1.
    city = "Café €" if dialect.encoding == "cp1252" else "Café \x80"
    assert Customer.objects.get(customer_id="ID1").city == city


@pytest.mark.django_db
def test_run_import_refuses_bad_flags(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(encode(rows_for("utf-8")))
    with pytest.raises(CommandError, match="Unknown delimiter ':'"):
        call_command("run_import", str(path), "--delimiter", ":")
    with pytest.raises(CommandError, match="Unknown encoding 'ebcdic'"):
        call_command("run_import", str(path), "--encoding", "ebcdic")
    assert not ImportState.objects.exists()


# --- Resuming after a kill -9, in each kind of file ----------------------------------------------
KILL_FILES = {
    "semicolon-cp1252": (
        "export.csv",
        lambda: encode(big_rows_for("cp1252"), delimiter=";", encoding="cp1252"),
    ),
    "tab-utf16le": (
        "export.tsv",
        lambda: encode(big_rows_for("utf-16-le"), delimiter="\t", encoding="utf-16-le"),
    ),
    "pipe-utf16be": (
        "export.txt",
        lambda: encode(big_rows_for("utf-16-be"), delimiter="|", encoding="utf-16-be"),
    ),
    "gzip": ("export.csv.gz", lambda: gzip_bytes(encode(big_rows_for("utf-8"), delimiter=";"))),
    "zip": (
        "export.zip",
        lambda: zip_bytes({"export.csv": encode(big_rows_for("latin-1"), encoding="latin-1")}),
    ),
}


def big_rows_for(encoding: str) -> list[list[str]]:
    rows = rows_for(encoding, 60)
    rows += [row(7, city="Cusco"), row(70, email="bad"), row(9, city="Tacna")]
    return rows


@pytest.mark.parametrize("point", ["after_commit:3", "before_commit:2"])
@pytest.mark.parametrize("kind", list(KILL_FILES))
def test_kill_then_resume_equals_an_uninterrupted_run(subprocess_env, tmp_path, kind, point):
    name, build = KILL_FILES[kind]
    path = tmp_path / name
    path.write_bytes(build())
    clean = manage(subprocess_env, "run_import", str(path), "--batch-size", "7")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    expected = final_state()
    Customer.objects.all().delete()
    ImportState.objects.all().delete()

    crashing = {**subprocess_env, "IMPORT_CRASH_AT": point}
    killed = manage(crashing, "run_import", str(path), "--batch-size", "7")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    state = ImportState.objects.get()
    assert state.status == ImportStatus.RUNNING and state.bytes_processed > 0
    assert 0 < state.rows_processed < 63

    resumed = manage(subprocess_env, "run_import", str(path), "--batch-size", "7")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Resuming import" in resumed.stdout
    assert ImportState.objects.get().status == ImportStatus.COMPLETED
    assert final_state() == expected
    assert expected[1]["rows_rejected"] == 1 and expected[1]["rows_updated"] == 2
