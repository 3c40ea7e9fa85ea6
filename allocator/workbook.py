"""Reading an .xlsx workbook into plain tables of raw cell values, safely.

Stage 1 of the data flow (workbook -> validated round -> LP -> solution -> report/record).
This module knows about zip containers, sheets, headers and cells; it knows nothing about
what a round means.

Reading happens in three steps, each of which can refuse the file with an InputError:

1. `sniff_container`: the file's first bytes and the zip directory, without expanding
   anything: size limits, compression ratio per part, encryption, macros, what the file
   looks like when it is not an .xlsx.
2. `scan_parts`: every XML part is expanded as a stream (never more than its directory entry
   declares) and parsed with expat, which refuses DOCTYPE/entity declarations. For the sheets
   the engine reads, the scan also measures the used area (so that a sheet with one cell at
   XFD1048576 is refused before anything allocates a grid for it) and records what python-
   calamine cannot show: error cells (#DIV/0!) and formulas without a saved value, which
   calamine reads as blank.
3. python-calamine reads the values of the wanted sheets, looked up by name only.
"""

from __future__ import annotations

import re
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from xml.parsers import expat

from allocator.cells import ErrorCell, FormulaCell, clean_text, is_blank
from allocator.errors import CellRef, InputError, InputIssue, Normalisation, Notice

# Limits the reader enforces (documented in docs/limits.md). A round workbook holds a few
# thousand rows at most; these leave two orders of magnitude of room while keeping memory
# bounded (calamine holds a sheet as a dense grid of its used area).
MAX_FILE_BYTES = 200 * 1024**2  # the .xlsx file on disk
MAX_UNCOMPRESSED_BYTES = 2 * 1024**3  # all parts together, once expanded
MAX_PART_RATIO = 100  # expanded/compressed, for any part of RATIO_FLOOR bytes or more
RATIO_FLOOR = 1024**2  # smaller parts are harmless whatever their ratio
MAX_PARTS = 10_000  # entries in the zip directory
MAX_SHEETS = 200  # sheets in the workbook
MAX_ROWS_PER_SHEET = 300_000  # last used row of a sheet the engine reads
MAX_COLUMNS = 256  # last used column (IV) of a sheet the engine reads
MAX_CELLS_PER_SHEET = 6_000_000  # rows x columns of the used area (A1 to the last cell)

_CHUNK = 1 << 20


@dataclass
class Table:
    """One sheet as a table: header names (lower-cased) with their column letters, and columns.

    Held by column, the raw values shared with nothing else: a 100,000-row sheet as one dict
    per row took more memory than all its values, and validation reads by column anyway.
    """

    sheet: str
    headers: dict[str, str]  # header -> column letter
    header_row: int
    row_numbers: list[int] = field(default_factory=list)  # the Excel row of each data row
    columns: dict[str, list[object]] = field(default_factory=dict)  # header -> a value per row
    notes: list[Normalisation] = field(default_factory=list)  # header cells the reader cleaned

    def ref(self, row: int | None, header: str | None) -> CellRef:
        """Where the cell of `header` in Excel row `row` lives."""
        column = self.headers.get(header) if header else None
        return CellRef(self.sheet, row, column, header)

    @property
    def rows(self) -> list[tuple[int, dict[str, object]]]:
        """(Excel row, {header: value}) per data row, for small sheets read row by row."""
        names = list(self.columns)
        return [(r, dict(zip(names, values, strict=True)))
                for r, *values in zip(self.row_numbers, *self.columns.values(), strict=True)]


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def column_index(letters: str) -> int:
    """A -> 1, Z -> 26, AA -> 27 (1-based, as in Excel)."""
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - 64)
    return n


def _fail(message: str, sheet: str = "(file)", row: int | None = None,
          column: str | None = None) -> InputError:
    return InputError([InputIssue(CellRef(sheet, row, column), message)])


# --- step 1: what the file is, from its first bytes and the zip directory ----------------------
def sniff_container(path: Path) -> list[zipfile.ZipInfo]:
    """Refuse what is not a safe .xlsx, reading only the file header and the zip directory.

    Returns the directory entries. Nothing is decompressed here, so a zip bomb costs the
    time it takes to read its directory.
    """
    path = Path(path)
    if not path.exists():
        raise _fail(f"{path} does not exist")
    if path.is_dir():
        raise _fail(f"{path} is a folder, not an .xlsx workbook")
    size = path.stat().st_size
    if size == 0:
        raise _fail("not an .xlsx workbook: the file is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise _fail(f"the file is {size:,} bytes; the largest workbook allocator reads is "
                    f"{MAX_FILE_BYTES:,} bytes (see docs/limits.md)")
    with path.open("rb") as fh:
        head = fh.read(64 * 1024)
    if not head.startswith(b"PK\x03\x04") and not head.startswith(b"PK\x05\x06"):
        raise _fail(f"not an .xlsx workbook: it looks like {_looks_like(head)}; open it in "
                    "Excel or LibreOffice and save it as an Excel workbook (.xlsx)")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise _fail(f"not an .xlsx workbook: the zip container is damaged ({exc})") from exc
    if len(infos) > MAX_PARTS:
        raise _fail(f"refused: the zip holds {len(infos):,} parts; the limit is {MAX_PARTS:,}")
    names = [i.filename for i in infos]
    dupes = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
    if dupes:
        raise _fail(f"refused: the zip holds the part {dupes[0]} twice (a damaged or "
                    "crafted file); save it again from Excel")
    _check_kind(set(names))
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise _fail(f"refused: the part {info.filename} is encrypted; remove the password "
                        "and save the workbook again")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _fail(f"refused: the part {info.filename} uses compression method "
                        f"{info.compress_type}, which Excel never writes")
        total += info.file_size
        if info.file_size >= RATIO_FLOOR and info.file_size > MAX_PART_RATIO * max(
                info.compress_size, 1):
            raise _fail(
                f"refused: the part {info.filename} would expand from {info.compress_size:,} "
                f"to {info.file_size:,} bytes (over {MAX_PART_RATIO} times; a zip bomb?); "
                "allocator did not expand it"
            )
        if total > MAX_UNCOMPRESSED_BYTES:
            raise _fail(
                f"refused: the workbook's parts would expand to more than {total:,} bytes; "
                f"the limit is {MAX_UNCOMPRESSED_BYTES:,} (see docs/limits.md)"
            )
    return infos


def _check_kind(names: set[str]) -> None:
    """A zip that is not an .xlsx workbook, or one that carries macros."""
    if "xl/workbook.xml" in names and "xl/_rels/workbook.xml.rels" in names:
        if any(n.lower().endswith("vbaproject.bin") for n in names):
            # The values could be read, but the decision record keeps the original file, and a
            # record must never carry code that runs when an auditor opens it.
            raise _fail("refused: the workbook contains macros (xl/vbaProject.bin); save it as "
                        "an Excel workbook without macros (.xlsx) and run it again")
        return
    if "xl/workbook.bin" in names:
        what = "a binary Excel workbook (.xlsb)"
    elif "mimetype" in names or "content.xml" in names:
        what = "an OpenDocument file (.ods/.odt)"
    elif any(n.startswith("word/") for n in names):
        what = "a Word document (.docx)"
    elif any(n.startswith("ppt/") for n in names):
        what = "a PowerPoint file (.pptx)"
    elif not names:
        what = "an empty zip archive"
    else:
        what = "a zip archive without an Excel workbook in it"
    raise _fail(f"not an .xlsx workbook: it looks like {what}; save the round as an Excel "
                "workbook (.xlsx)")


def _looks_like(head: bytes) -> str:
    """A short guess at what a non-zip file is, from its first bytes."""
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        if "EncryptionInfo".encode("utf-16-le") in head or "EncryptedPackage".encode(
                "utf-16-le") in head:
            return "a password-protected (encrypted) Excel workbook; remove the password"
        return "a legacy Excel 97-2003 workbook (.xls) or another old Office file"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file"
    if head.startswith((b"Rar!", b"7z\xbc\xaf")):
        return "a RAR or 7z archive"
    text = _as_text(head)
    if text is None:
        return "a binary file of an unknown kind"
    lower = text.lstrip("\ufeff \t\r\n").lower()
    if lower.startswith("<?xml") and "urn:schemas-microsoft-com:office:spreadsheet" in lower:
        return "an Excel 2003 XML spreadsheet"
    if lower.startswith(("<html", "<!doctype html", "<table")) or "<html" in lower[:500]:
        return "a web page (HTML), perhaps exported as .xls"
    if lower.startswith("<"):
        return "an XML or HTML text file"
    first = text.splitlines()[0] if text.strip() else ""
    if not text.strip():
        return "a text file with only blank space"
    for sep, name in ((";", "semicolon"), (",", "comma"), ("\t", "tab")):
        if first.count(sep) >= 1:
            return f"a text file of {name}-separated values (CSV)"
    return "a plain text file"


def _as_text(head: bytes) -> str | None:
    for encoding in ("utf-8", "utf-16"):
        try:
            text = head.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "utf-16" and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
            continue
        if sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\r\n") == 0:
            return text
    try:  # a Latin-1 CSV: decodes always; keep it only if it has no control bytes
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    if any((ord(ch) < 32 and ch not in "\t\r\n") or 0x7F <= ord(ch) < 0xA0 for ch in text):
        return None
    return text


# --- step 2: expand each XML part as a stream and parse it strictly ----------------------------
def _part_chunks(fh: BinaryIO, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The expanded bytes of one part, never more than its directory entry declares.

    Python's zipfile would silently stop at the declared size; a part whose data goes on
    expanding past it is a crafted file, and other readers might not stop. The CRC is checked.
    """
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise _fail(f"not an .xlsx workbook: the zip entry of {info.filename} is damaged")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    fh.seek(info.header_offset + 30 + name_len + extra_len)
    left = info.compress_size
    produced = 0
    crc = 0
    inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None

    def account(out: bytes) -> bytes:
        nonlocal produced, crc
        produced += len(out)
        if produced > info.file_size:
            raise _fail(f"refused: the part {info.filename} expands beyond the "
                        f"{info.file_size:,} bytes its zip entry declares (a crafted file)")
        crc = zlib.crc32(out, crc)
        return out

    try:
        while left > 0:
            raw = fh.read(min(_CHUNK, left))
            if not raw:
                raise _fail(f"not an .xlsx workbook: the part {info.filename} is truncated")
            left -= len(raw)
            if inflater is None:
                yield account(raw)
                continue
            data = raw
            while data:
                out = inflater.decompress(data, _CHUNK)
                data = inflater.unconsumed_tail
                if out:
                    yield account(out)
                if inflater.eof:
                    break
        if inflater is not None:
            tail = inflater.flush()
            if tail:
                yield account(tail)
    except zlib.error as exc:
        raise _fail(f"not an .xlsx workbook: the part {info.filename} is damaged ({exc})") from exc
    if produced != info.file_size or crc != info.CRC:
        raise _fail(f"not an .xlsx workbook: the part {info.filename} is damaged (its size or "
                    "checksum does not match the zip directory)")


class _SheetScan:
    """Expat callbacks that measure a sheet and note the cells calamine cannot show."""

    def __init__(self, sheet: str):
        self.sheet = sheet
        self.row = 0
        self.col = 0
        self.cells = 0
        self.max_row = 0
        self.max_col = 0
        self.special: dict[tuple[int, int], object] = {}  # (row, col), 1-based
        self.merged: list[tuple[int, int, int, int]] = []  # r0, c0, r1, c1, 1-based
        self._cell: tuple[int, int] | None = None
        self._type: str | None = None
        self._capture: list[str] | None = None
        self._value: list[str] = []
        self._formula: list[str] = []
        self._has_formula = False
        self._has_value = False
        self.hidden_rows: set[int] = set()  # rows Excel does not show
        self.hidden_cols: list[tuple[int, int]] = []  # (first, last) 1-based column ranges
        self._rows_seen: set[int] = set()
        self._cells_seen: set[tuple[int, int]] = set()

    def start(self, name: str, attrs: dict[str, str]) -> None:
        local = name.rpartition(":")[2]
        if local == "row":
            r = attrs.get("r")
            self.row = int(r) if r and r.isdigit() else self.row + 1
            self.col = 0
            self._check(self.row, 1)
            if self.row in self._rows_seen:
                raise _twice(self.sheet, self.row)
            self._rows_seen.add(self.row)
            if _row_hidden(attrs):
                self.hidden_rows.add(self.row)
        elif local == "col":
            _add_hidden_cols(self.hidden_cols, attrs)
        elif local == "c":
            ref = attrs.get("r")
            m = _CELL_REF.match(ref) if ref else None
            if m:
                self.col = column_index(m.group(1))
                if m.group(2):
                    self.row = int(m.group(2))
            else:
                self.col += 1
            self.cells += 1
            self._check(max(self.row, 1), self.col)
            key = (max(self.row, 1), self.col)
            if key in self._cells_seen:
                raise _twice(self.sheet, key[0], column_letter(key[1] - 1))
            self._cells_seen.add(key)
            self._cell = (max(self.row, 1), self.col)
            self._type = attrs.get("t")
            self._value, self._formula, self._has_formula = [], [], False
            self._has_value = False
        elif self._cell is not None and local == "v":
            self._capture = self._value
            self._has_value = True
        elif self._cell is not None and local == "f":
            self._has_formula = True
            self._capture = self._formula
        elif local == "mergeCell":
            m = _RANGE_REF.match(attrs.get("ref", ""))
            if m:
                c0, r0, c1, r1 = m.groups()
                r1, c1 = (r1 or r0), (c1 or c0)
                self.merged.append((int(r0), column_index(c0), int(r1), column_index(c1)))

    def end(self, name: str) -> None:
        local = name.rpartition(":")[2]
        if local in ("v", "f"):
            self._capture = None
        elif local == "c" and self._cell is not None:
            if self._type == "s" and self._has_value:
                _check_shared_index("".join(self._value), self.sheet, *self._cell)
            value = "".join(self._value).strip()
            if self._type == "e":
                self.special[self._cell] = ErrorCell(value or "#ERROR")
            elif self._has_formula and not value and self._type != "inlineStr":
                formula = "".join(self._formula).strip()
                self.special[self._cell] = FormulaCell("=" + formula if formula else
                                                       "(a shared formula)")
            self._cell = None

    def text(self, data: str) -> None:
        if self._capture is not None:
            self._capture.append(data)

    def _check(self, row: int, col: int) -> None:
        self.max_row = max(self.max_row, row)
        self.max_col = max(self.max_col, col)
        where = f"{column_letter(col - 1)}{row}"
        if row > MAX_ROWS_PER_SHEET:
            raise _fail(f"the sheet uses row {row:,}; the limit is {MAX_ROWS_PER_SHEET:,} rows "
                        "per sheet (see docs/limits.md); delete the rows below the table",
                        self.sheet, row)
        if col > MAX_COLUMNS:
            raise _fail(f"the sheet uses column {column_letter(col - 1)}; the limit is "
                        f"{MAX_COLUMNS} columns (up to {column_letter(MAX_COLUMNS - 1)}); "
                        "delete the columns right of the table", self.sheet, row,
                        column_letter(col - 1))
        area = self.max_row * self.max_col
        if area > MAX_CELLS_PER_SHEET or self.cells > MAX_CELLS_PER_SHEET:
            raise _fail(f"the sheet's used area reaches {where} ({area:,} cells from A1); the "
                        f"limit is {MAX_CELLS_PER_SHEET:,} cells per sheet (see docs/limits.md); "
                        "delete what lies outside the table", self.sheet, row,
                        column_letter(col - 1))


_TRUE_XML = ("1", "true")


def _check_shared_index(text: str, sheet: str, row: int, col: int) -> None:
    """A shared-string cell (t="s") holds the index of its text in xl/sharedStrings.xml, a
    whole number; calamine reads any other value as index 0, another cell's text."""
    if not (text.isascii() and text.isdigit()):
        raise _fail(f"the cell's XML says it holds a shared text, but its index is "
                    f"{text[:40]!r}, not a whole number (a damaged or hand-edited file); save "
                    "the workbook again from Excel", sheet, row, column_letter(col - 1))


def _twice(sheet: str, row: int, column: str | None = None) -> InputError:
    """A row or cell the sheet's XML holds twice: Excel shows one, another reader the other."""
    what = f"the cell {column}{row}" if column else f"row {row}"
    return _fail(f"{what} appears twice in the sheet's XML (a damaged or hand-edited file: "
                 "Excel shows one copy, another program may read the other); save the workbook "
                 "again from Excel", sheet, row, column)


def _zero(value: str | None) -> bool:
    try:
        return value is not None and float(value) < 0.5
    except ValueError:
        return False


def _row_hidden(attrs: dict[str, str]) -> bool:
    """Hidden, or given no height: Excel shows nothing of it either way."""
    return attrs.get("hidden") in _TRUE_XML or _zero(attrs.get("ht"))


def _add_hidden_cols(out: list[tuple[int, int]], attrs: dict[str, str]) -> None:
    lo, hi = attrs.get("min", ""), attrs.get("max", "")
    if (attrs.get("hidden") in _TRUE_XML or _zero(attrs.get("width"))) and lo.isdigit():
        out.append((int(lo), int(hi) if hi.isdigit() else int(lo)))


_CELL_REF = re.compile(r"^\$?([A-Z]{1,3})\$?(\d*)$")
_RANGE_REF = re.compile(r"^\$?([A-Z]{1,3})\$?(\d+)(?::\$?([A-Z]{1,3})\$?(\d+))?$")


class _WorkbookScan:
    """Expat callbacks for xl/workbook.xml: the sheets, in the order they are listed."""

    def __init__(self) -> None:
        self.sheets: list[tuple[str, str, str]] = []  # name, relationship id, state

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if name.rpartition(":")[2] == "sheet":
            rid = next((v for k, v in attrs.items() if k.rpartition(":")[2] == "id"), "")
            self.sheets.append((attrs.get("name", ""), rid, attrs.get("state", "visible")))


class _RelsScan:
    """Expat callbacks for a .rels part: relationship id -> target."""

    def __init__(self) -> None:
        self.targets: dict[str, str] = {}

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if name.rpartition(":")[2] == "Relationship":
            self.targets[attrs.get("Id", "")] = attrs.get("Target", "")


def _parse_part(fh: BinaryIO, info: zipfile.ZipInfo, handler: object | None = None) -> None:
    """Parse one XML part with expat; refuse DTDs and entities; feed `handler` if given."""
    _parse_chunks(_part_chunks(fh, info), info, handler)


# A sheet is measured with regular expressions over its bytes when it holds nothing that
# calamine would misread; the per-element scan above (ten times slower) is kept for sheets
# with formulas, error cells, merged cells or cells without a reference.
_SLOW_SIGNS = re.compile(rb'<(?:\w+:)?f[\s/>]|\st="e"|<(?:\w+:)?mergeCell[\s/>]')
_PREFIXED_CELL = re.compile(rb"<\w+:c[\s/>]")
_LAST_CELL_ROW = re.compile(rb'<c r="[A-Z]{1,3}(\d+)"')
_ROW_REFS = re.compile(rb'<(?:\w+:)?row\s[^>]*?\br="(\d+)"')


def _scan_sheet(fh: BinaryIO, info: zipfile.ZipInfo, scan: _SheetScan) -> None:
    """Parse a wanted sheet strictly, and measure it (fast path) or scan it cell by cell."""
    data = b"".join(_part_chunks(fh, info))
    if _has_slow_signs(data) or (b't="s"' in data and _BAD_SHARED_INDEX.search(data)):
        _parse_chunks([data], info, scan)  # a bad shared-string index: the scan names the cell
        return
    _parse_chunks([data], info, None)  # well-formed, no DTD: checked at C speed
    n_refs = data.count(b'<c r="')
    # Every tag starting "<c" (cells, but also <cols>, <cfRule>...) a cell with a reference:
    # then the cells are those, found in one pass instead of three.
    n_cells = n_refs if data.count(b"<c") == n_refs else (
        data.count(b"<c ") + data.count(b"<c>") + data.count(b"<c/>"))
    if n_cells != n_refs or (b":c" in data and _PREFIXED_CELL.search(data)):  # cells without r=
        # or prefixed tags (the substring test first: the regex has no literal prefix)
        _parse_chunks([data], info, scan)
        return
    refs = _CELL_REFS.findall(data)
    # "$A$3", "A03", row "03": the per-element scan reads them as the numbers they are
    if len(refs) != n_refs or b'<row r="0' in data or _PADDED_REF.search(data):
        _parse_chunks([data], info, scan)
        return
    rows = _row_numbers(data)
    _refuse_twice(scan.sheet, rows, refs)
    if b'hidden="' in data or b'ht="0' in data or b'width="0' in data:
        _hidden_parts(data, scan)
    cell_rows = [int(r) for r in _LAST_CELL_ROW.findall(data[-4096:])]
    max_row = max([*rows, *cell_rows], default=0)
    # Single-letter references bound the width by Z, which settles the limits for any sheet of
    # up to MAX_CELLS_PER_SHEET / 26 rows without looking for the widest letter.
    max_col = _max_column(data) if _WIDE_CELL.search(data) else 26
    if max_col == 26 and max_row * max_col > MAX_CELLS_PER_SHEET:
        max_col = _max_column(data)
    if (max_row > MAX_ROWS_PER_SHEET or max_col > MAX_COLUMNS
            or max_row * max_col > MAX_CELLS_PER_SHEET or n_cells > MAX_CELLS_PER_SHEET
            or (n_cells and not rows)):
        _parse_chunks([data], info, scan)  # over a limit: the slow scan names the first place
        return
    scan.max_row, scan.max_col, scan.cells = max_row, max_col, n_cells  # max_col: an upper bound


_WIDE_CELL = re.compile(rb'<c r="[A-Z]{2}')
# A shared-string cell whose <v> is not a whole number (see _check_shared_index).
_BAD_SHARED_INDEX = re.compile(rb't="s"[^>]*>\s*<(?:\w+:)?v>(?![0-9]+</)')  # literal first: fast
_CELL_REFS = re.compile(rb'<c r="([A-Z]{1,3}\d+)"')
_PADDED_REF = re.compile(rb'<c r="[A-Z]{1,3}0')
_HIDDEN_ROW = re.compile(rb'<(?:\w+:)?row\s[^>]*?\b(?:hidden="(?:1|true)"|ht="0)[^>]*>')
_COL_TAG = re.compile(rb'<(?:\w+:)?col\s[^>]*>')
_ATTR = re.compile(rb'\b(\w+)="([^"]*)"')


def _refuse_twice(sheet: str, rows: list[int], refs: list[bytes]) -> None:
    """A row number or cell reference given twice is refused (fast path of _SheetScan)."""
    if len(set(rows)) != len(rows):
        seen: set[int] = set()
        raise _twice(sheet, next(r for r in rows if r in seen or seen.add(r)))  # type: ignore[func-returns-value]
    if len(set(refs)) != len(refs):
        seen_refs: set[bytes] = set()
        ref = next(r for r in refs if r in seen_refs or seen_refs.add(r))  # type: ignore[func-returns-value]
        m = _CELL_REF.match(ref.decode())
        assert m is not None
        raise _twice(sheet, int(m.group(2)), m.group(1))


def _hidden_parts(data: bytes, scan: _SheetScan) -> None:
    """Hidden rows and columns of a sheet read by the fast path."""
    for tag in _HIDDEN_ROW.findall(data):
        attrs = {k.decode(): v.decode() for k, v in _ATTR.findall(tag)}
        if attrs.get("r", "").isdigit() and _row_hidden(attrs):
            scan.hidden_rows.add(int(attrs["r"]))
    for tag in _COL_TAG.findall(data):
        _add_hidden_cols(scan.hidden_cols, {k.decode(): v.decode() for k, v in _ATTR.findall(tag)})
_PLAIN_ROW_REF = re.compile(rb'<row r="(\d+)"')


def _has_slow_signs(data: bytes) -> bool:
    """Whether _SLOW_SIGNS matches; substring tests first, because its search has no literal
    prefix to skip by and takes seconds on a 100,000-row sheet. Each test is implied by a match."""
    if not (b"<f" in data or b":f" in data or b't="e"' in data or b"mergeCell" in data):
        return False
    return _SLOW_SIGNS.search(data) is not None


def _row_numbers(data: bytes) -> list[int]:
    """The r= of every row element; the literal-prefix pattern when every row starts with r=."""
    if b":row" not in data:
        found = _PLAIN_ROW_REF.findall(data)
        if len(found) == data.count(b"<row "):
            return [int(r) for r in found]
    return [int(r) for r in _ROW_REFS.findall(data)]


def _max_column(data: bytes) -> int:
    """The right-most column any cell reference names (searching letters from the widest)."""
    for width in (3, 2):
        found = re.findall(rb'<c r="([A-Z]{%d})\d' % width, data)
        if found:
            return max(column_index(c.decode()) for c in set(found))
    for index in range(25, -1, -1):
        if (b'<c r="' + bytes([65 + index])) in data:
            return index + 1
    return 0


def _parse_chunks(chunks, info: zipfile.ZipInfo, handler: object | None = None) -> None:
    parser = expat.ParserCreate()
    parser.buffer_text = True

    def refuse(*_args: object) -> None:
        raise _fail(f"refused: the part {info.filename} declares a DOCTYPE or entities, "
                    "which an Excel workbook never does (a crafted file?)")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    if handler is not None:
        if hasattr(handler, "start"):
            parser.StartElementHandler = handler.start
        if hasattr(handler, "end"):
            parser.EndElementHandler = handler.end
        if hasattr(handler, "text"):
            parser.CharacterDataHandler = handler.text
    try:
        for chunk in chunks:
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise _fail(f"not an .xlsx workbook: the part {info.filename} is not well-formed XML "
                    f"({expat.ErrorString(exc.code)}, line {exc.lineno})") from exc


@dataclass
class SheetInfo:
    """A sheet of the workbook: its name, its XML part, and whether it is hidden."""

    name: str
    part: str | None
    state: str
    scan: _SheetScan | None = None


def scan_parts(path: Path, infos: list[zipfile.ZipInfo], wanted: set[str]) -> list[SheetInfo]:
    """Parse every XML part strictly; measure the wanted sheets. Returns the workbook's sheets."""
    by_name = {i.filename: i for i in infos}
    with Path(path).open("rb") as fh:
        wb, rels = _WorkbookScan(), _RelsScan()
        _parse_part(fh, by_name["xl/workbook.xml"], wb)
        _parse_part(fh, by_name["xl/_rels/workbook.xml.rels"], rels)
        if len(wb.sheets) > MAX_SHEETS:
            raise _fail(f"the workbook has {len(wb.sheets)} sheets; the limit is {MAX_SHEETS}")
        sheets = []
        for name, rid, state in wb.sheets:
            target = rels.targets.get(rid)
            sheets.append(SheetInfo(name, _resolve(target) if target else None, state))
        scans: dict[str, _SheetScan] = {}
        for sheet in sheets:
            if _sheet_key(sheet.name) in wanted and sheet.part:
                sheet.scan = scans.setdefault(sheet.part, _SheetScan(sheet.name))
        done = {"xl/workbook.xml", "xl/_rels/workbook.xml.rels"}
        for info in infos:
            if info.filename in done or info.is_dir():
                continue
            if info.filename in scans:
                _scan_sheet(fh, info, scans[info.filename])
            elif info.filename.lower().endswith((".xml", ".rels", ".vml")):
                _parse_part(fh, info)
    return sheets


def _resolve(target: str) -> str:
    """A relationship target of xl/workbook.xml as a path inside the zip."""
    parts = target.lstrip("/").split("/") if target.startswith("/") else ["xl", *target.split("/")]
    out: list[str] = []
    for part in parts:
        if part == "..":
            if out:
                out.pop()
        elif part not in ("", "."):
            out.append(part)
    return "/".join(out)


def _sheet_key(name: str) -> str:
    return clean_text(name).lower()


# --- step 3: values ----------------------------------------------------------------------------
def read_tables(path: Path, wanted: set[str]) -> tuple[dict[str, Table], list[str]]:
    """Read the wanted sheets (names matched case-insensitively) as tables.

    Sheets are found by name only: their order, hidden sheets and extra sheets change
    nothing. Returns the tables found, keyed by canonical (lower-case) name, and the names of
    the workbook's sheets. Structural problems (merged cells, duplicate headers, values
    outside the table) are collected and raised together.
    """
    path = Path(path)
    sheets = checked_sheets(path, wanted)
    return tables_from_sheets(path, sheets, wanted), [s.name for s in sheets]


def checked_sheets(path: Path, wanted: set[str]) -> list[SheetInfo]:
    """Steps 1 and 2: the workbook's sheets, once the container and every part passed."""
    return scan_parts(path, sniff_container(path), wanted)


def tables_from_sheets(path: Path, sheets: list[SheetInfo], wanted: set[str]) -> dict[str, Table]:
    """Step 3: the values of the wanted sheets (from `checked_sheets`) as tables."""
    issues: list[InputIssue] = []
    by_key: dict[str, SheetInfo] = {}
    for sheet in sheets:
        key = _sheet_key(sheet.name)
        if key in wanted:
            if key in by_key:
                issues.append(InputIssue(CellRef(sheet.name), f"two sheets are named {key!r} "
                                         f"({by_key[key].name!r} and {sheet.name!r}); "
                                         "rename or delete one"))
                continue
            by_key[key] = sheet
    if issues:
        raise InputError(issues)
    book = _calamine(path) if by_key else None
    tables: dict[str, Table] = {}
    for key, sheet in by_key.items():
        if sheet.part is None or sheet.scan is None:
            issues.append(InputIssue(CellRef(sheet.name), "the sheet has no data part in the "
                                     "file (a damaged workbook); save it again from Excel"))
            continue
        table, problems = _table_from_grid(sheet.name, _grid(book, sheet))  # grid dropped here
        for r0, c0, r1, c1 in sheet.scan.merged:
            if r1 >= table.header_row:
                span = f"{column_letter(c0 - 1)}{r0}:{column_letter(c1 - 1)}{r1}"
                issues.append(InputIssue(
                    CellRef(sheet.name, r0, column_letter(c0 - 1)),
                    f"merged cells {span} inside the table; unmerge them and type the value "
                    "in every cell"))
        issues += problems
        table.notes.extend(_hidden_notes(sheet, table))
        tables[key] = table
    if issues:
        raise InputError(issues)
    return tables


def _hidden_notes(sheet: SheetInfo, table: Table) -> list[Notice]:
    """What the engine reads but Excel does not show: the sheet, rows, columns of the table."""
    out = []
    if sheet.state in ("hidden", "veryHidden"):
        how = "very hidden (shown only through Excel's VBA editor)" if sheet.state == "veryHidden" \
            else "hidden"
        out.append(Notice(CellRef(sheet.name), f"the sheet is {how} in Excel; the engine read it"))
    scan = sheet.scan
    if scan is None:
        return out
    read_rows = [table.header_row, *table.row_numbers]
    for r in sorted(scan.hidden_rows & set(read_rows)):
        out.append(Notice(CellRef(sheet.name, r), "the row is hidden in Excel; the engine read "
                          "its values"))
    for name, letter in table.headers.items():
        j = column_index(letter)
        if any(lo <= j <= hi for lo, hi in scan.hidden_cols):
            out.append(Notice(CellRef(sheet.name, None, letter, name), "the column is hidden in "
                              "Excel; the engine read its values"))
    return out


# calamine picks its reader by the file's extension. The content is known to be an .xlsx
# (sniff_container), so a file named as another kind (a valid .xlsx saved as round.xls) is read
# from its content instead; other names, .xlsx among them, keep the path (no copy in memory).
_OTHER_KIND_SUFFIXES = frozenset({".xls", ".xla", ".xlsb", ".ods"})


def _calamine(path: Path):  # -> CalamineWorkbook
    from python_calamine import CalamineWorkbook

    try:
        if path.suffix.lower() in _OTHER_KIND_SUFFIXES:
            with path.open("rb") as fh:
                return CalamineWorkbook.from_filelike(fh)
        return CalamineWorkbook.from_path(str(path))
    except BaseException as exc:  # calamine raises pyo3 PanicException (a BaseException) too
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise _fail(f"not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from exc


def _grid(book, sheet: SheetInfo) -> list[list[object]]:
    """The sheet's values from A1, with error cells and unsaved formulas put back in."""
    try:
        grid = book.get_sheet_by_name(sheet.name).to_python(skip_empty_area=False)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise _fail(f"the sheet cannot be read ({type(exc).__name__}: {exc}); save the "
                    "workbook again from Excel", sheet.name) from exc
    assert sheet.scan is not None
    if sheet.scan.special:  # calamine's rows are lists of their own: patched in place
        grid = list(grid)
    for (r, c), value in sheet.scan.special.items():
        while len(grid) < r:
            grid.append([])
        row = grid[r - 1]
        while len(row) < c:
            row.append("")
        row[c - 1] = value
    return grid


def _table_from_grid(sheet: str, grid: list[list[object]]) -> tuple[Table, list[InputIssue]]:
    """Header row = the first row with a value; every later non-blank row is a data row."""
    issues: list[InputIssue] = []
    header_idx = next((i for i, row in enumerate(grid) if not _blank_row(row)), None)
    if header_idx is None:
        return Table(sheet, {}, 1), []
    header_row = header_idx + 1
    headers: dict[str, str] = {}
    positions: list[tuple[int, str]] = []
    table = Table(sheet, headers, header_row)
    for j, raw in enumerate(grid[header_idx]):
        if is_blank(raw):
            continue
        letter = column_letter(j)
        if not isinstance(raw, str):
            issues.append(InputIssue(CellRef(sheet, header_row, letter),
                                     f"expected a header name (text), got {_describe(raw)}"))
            continue
        cleaned = clean_text(raw)
        name = cleaned.lower().replace(" ", "_")
        if name in headers:
            issues.append(InputIssue(CellRef(sheet, header_row, letter, name),
                                     f"duplicate header {name!r} (also column {headers[name]}); "
                                     "rename or delete one of the two columns"))
            continue
        if cleaned != raw.strip() and cleaned != " ".join(raw.split()):
            table.notes.append(Normalisation(CellRef(sheet, header_row, letter, name), raw, name,
                                             "removed invisible characters or normalised "
                                             "Unicode in a header"))
        headers[name] = letter
        positions.append((j, name))
    header_cols = {j for j, _ in positions}
    width = max((len(row) for row in grid), default=0)
    unheaded = [j for j in range(width) if j not in header_cols]
    # DESIGN: blank rows are skipped. A row starting with a number or plain text is not blank:
    # told inline, as a call per row cost more than the test.
    kept = [i for i in range(header_idx + 1, len(grid))
            if ((row := grid[i]) and ((kind := type(first := row[0])) is float or kind is int or (
                kind is str and first.isascii() and first.isprintable() and first.strip())))
            or not _blank_row(row)]
    for i in kept if unheaded else ():
        row = grid[i]
        for j in unheaded:
            if j < len(row) and not is_blank(row[j]):
                issues.append(InputIssue(
                    CellRef(sheet, i + 1, column_letter(j)),
                    "a value in a column without a header; add a header or clear the cell"))
                break
    table.row_numbers = [i + 1 for i in kept]
    rows = [grid[i] for i in kept]
    shortest = min(map(len, rows), default=0)
    if rows and all(j < shortest for j, _ in positions):  # rectangular: transposed at C speed
        transposed = list(zip(*rows, strict=False))  # rows longer than `shortest` are cut
        table.columns = {name: list(transposed[j]) for j, name in positions}
    else:
        table.columns = {name: _column(rows, j, shortest) for j, name in positions}
    return table, issues


def _blank_row(row: list[object]) -> bool:
    """Whether every cell of the row is blank; decided by its first value in the common case."""
    for v in row:
        if v is None or v == "":
            continue
        if type(v) is not str:
            return False
        if v.isascii() and v.isprintable():  # no invisible characters: blank iff only spaces
            if v.strip():
                return False
        elif not is_blank(v):
            return False
    return True


def _column(rows: list[list[object]], j: int, shortest: int) -> list[object]:
    """The j-th value of every row, None where a row is shorter."""
    if j < shortest:
        return [row[j] for row in rows]
    return [row[j] if j < len(row) else None for row in rows]


def _describe(value: object) -> str:
    from allocator.cells import describe

    return describe(value)
