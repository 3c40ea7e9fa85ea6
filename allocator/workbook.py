"""Reading an .xlsx workbook into plain tables of raw cell values, safely.

Stage 1 of the data flow (workbook -> validated round -> LP -> solution -> report/record).
This module knows about zip containers, sheets, headers and cells; it knows nothing about
what a round means. Values come from python-calamine (fast); a sheet that holds error cells
or formulas is re-read with openpyxl, because calamine shows both as blank.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml  # noqa: F401  (checked at import: the reader must never parse XML unsafely)
from defusedxml.ElementTree import fromstring as safe_fromstring

from allocator.cells import ErrorCell, FormulaCell, is_blank
from allocator.errors import CellRef, InputError, InputIssue

# Limits the reader enforces (documented in the README).
MAX_FILE_BYTES = 200 * 1024**2  # the .xlsx file on disk
MAX_UNCOMPRESSED_BYTES = 2 * 1024**3  # all parts together, once expanded
MAX_PART_RATIO = 200  # expanded/compressed, for any part over RATIO_FLOOR bytes
RATIO_FLOOR = 8 * 1024**2
MAX_ROWS_PER_SHEET = 1_048_576  # Excel's own limit
MAX_COLUMNS = 16_384


@dataclass
class Table:
    """One sheet as a table: header names (lower-cased) with their column letters, and rows."""

    sheet: str
    headers: dict[str, str]  # header -> column letter
    header_row: int
    rows: list[tuple[int, dict[str, object]]] = field(default_factory=list)  # (excel row, values)

    def ref(self, row: int | None, header: str | None) -> CellRef:
        column = self.headers.get(header) if header else None
        return CellRef(self.sheet, row, column, header)


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def _fail(message: str, sheet: str = "(file)") -> InputError:
    return InputError([InputIssue(CellRef(sheet), message)])


def sniff_container(path: Path) -> None:
    """Refuse what is not a safe .xlsx before any XML is parsed."""
    if not path.exists():
        raise _fail(f"{path} does not exist")
    if path.is_dir():
        raise _fail(f"{path} is a folder, not an .xlsx workbook")
    size = path.stat().st_size
    if size == 0:
        raise _fail("not an .xlsx workbook: the file is empty")
    if size > MAX_FILE_BYTES:
        raise _fail(f"the file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}")
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise _fail(
            "not an .xlsx workbook: it looks like a legacy .xls file or an encrypted "
            "(password-protected) workbook; save it as an unprotected .xlsx"
        )
    if not head.startswith(b"PK"):
        kind = "a text/CSV file" if _looks_like_text(path) else "some other binary file"
        raise _fail(f"not an .xlsx workbook: it looks like {kind}; save it as .xlsx")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = {i.filename for i in infos}
            total = 0
            for info in infos:
                total += info.file_size
                if info.file_size > RATIO_FLOOR and info.file_size > MAX_PART_RATIO * max(
                    info.compress_size, 1
                ):
                    raise _fail(
                        f"refused: part {info.filename} expands {info.file_size:,} bytes from "
                        f"{info.compress_size:,} (a zip bomb?)"
                    )
            if total > MAX_UNCOMPRESSED_BYTES:
                raise _fail(
                    f"refused: the workbook expands to {total:,} bytes; "
                    f"the limit is {MAX_UNCOMPRESSED_BYTES:,}"
                )
            if "xl/workbook.xml" not in names and not any(
                n.endswith("workbook.xml") for n in names
            ):
                what = "an OpenDocument (.ods) file" if "content.xml" in names else "a zip archive"
                if "word/document.xml" in names:
                    what = "a Word document"
                raise _fail(f"not an .xlsx workbook: it looks like {what}")
            for info in infos:
                if info.filename.endswith((".xml", ".rels")) and info.file_size:
                    with zf.open(info) as part:
                        chunk = part.read(4096)
                    if b"<!DOCTYPE" in chunk or b"<!ENTITY" in chunk:
                        raise _fail(
                            f"refused: part {info.filename} declares a DOCTYPE or entities, "
                            "which an Excel workbook never does"
                        )
    except zipfile.BadZipFile as exc:
        raise _fail(f"not an .xlsx workbook: the zip container is damaged ({exc})") from exc


def _looks_like_text(path: Path) -> bool:
    with path.open("rb") as fh:
        sample = fh.read(2048)
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _sheet_parts(path: Path) -> dict[str, str]:
    """Sheet name -> its XML part inside the zip (parsed with defusedxml)."""
    ns = {
        "m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
        "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    }
    with zipfile.ZipFile(path) as zf:
        wb = safe_fromstring(zf.read("xl/workbook.xml"))
        rels = safe_fromstring(zf.read("xl/_rels/workbook.xml.rels"))
    targets = {rel.get("Id"): rel.get("Target") for rel in rels}
    out = {}
    for sheet in wb.iterfind("m:sheets/m:sheet", ns):
        rid = sheet.get(f"{{{ns['r']}}}id")
        target = targets.get(rid, "")
        target = target.lstrip("/")
        if not target.startswith("xl/"):
            target = "xl/" + target
        out[sheet.get("name")] = target
    return out


_NEEDS_OPENPYXL = re.compile(rb'<(?:\w+:)?f[ >/]|t="e"')


def read_tables(path: Path, wanted: set[str]) -> tuple[dict[str, Table], list[str]]:
    """Read the wanted sheets (names matched case-insensitively) as tables.

    Returns the tables found, keyed by canonical (lower-case) name, and the names of the
    workbook's sheets. Structural problems (merged cells, duplicate headers, too many rows)
    are collected and raised together.
    """
    from python_calamine import CalamineWorkbook

    path = Path(path)
    sniff_container(path)
    try:
        parts = _sheet_parts(path)
        book = CalamineWorkbook.from_path(str(path))
    except InputError:
        raise
    except Exception as exc:  # a damaged container is an input problem, not a crash
        raise _fail(f"not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from exc
    issues: list[InputIssue] = []
    by_key: dict[str, str] = {}
    for name in book.sheet_names:
        key = name.strip().lower()
        if key in wanted:
            if key in by_key:
                issues.append(InputIssue(CellRef(name), f"two sheets are named {key!r}"))
            by_key[key] = name
    tables: dict[str, Table] = {}
    for key, name in by_key.items():
        sheet = book.get_sheet_by_name(name)
        if sheet.total_height > MAX_ROWS_PER_SHEET or sheet.total_width > MAX_COLUMNS:
            issues.append(InputIssue(CellRef(name), f"the sheet has {sheet.total_height:,} rows; "
                                     f"the limit is {MAX_ROWS_PER_SHEET:,}"))
            continue
        part = parts.get(name)
        grid, origin = _grid(path, name, part, sheet)
        table, problems = _table_from_grid(name, grid, origin)
        merged = sheet.merged_cell_ranges or []
        for (r0, c0), (r1, c1) in merged:
            if table is not None and r1 + 1 >= table.header_row:
                ref = CellRef(name, r0 + 1, column_letter(c0))
                issues.append(InputIssue(ref, f"merged cells {column_letter(c0)}{r0 + 1}:"
                              f"{column_letter(c1)}{r1 + 1} inside the table; unmerge them and "
                              "type the value in every cell"))
        issues += problems
        if table is not None:
            tables[key] = table
    if issues:
        raise InputError(issues)
    return tables, list(book.sheet_names)


def _grid(path: Path, name: str, part: str | None, sheet) -> tuple[list[list[object]], tuple[int, int]]:
    """The sheet's cell values and the (row, col) of the top-left cell, 0-based."""
    if part and _part_needs_openpyxl(path, part):
        return _grid_openpyxl(path, name)
    rows = sheet.to_python(skip_empty_area=False)
    return rows, (0, 0)


def _part_needs_openpyxl(path: Path, part: str) -> bool:
    with zipfile.ZipFile(path) as zf:
        try:
            with zf.open(part) as fh:
                tail = b""
                while chunk := fh.read(1 << 20):
                    if _NEEDS_OPENPYXL.search(tail + chunk):
                        return True
                    tail = chunk[-16:]
        except KeyError:
            return True
    return False


def _grid_openpyxl(path: Path, name: str) -> tuple[list[list[object]], tuple[int, int]]:
    import openpyxl

    values_wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    formulas_wb = openpyxl.load_workbook(path, read_only=True, data_only=False)
    try:
        grid: list[list[object]] = []
        for vrow, frow in zip(
            values_wb[name].iter_rows(), formulas_wb[name].iter_rows(), strict=False
        ):
            out: list[object] = []
            for vcell, fcell in zip(vrow, frow, strict=False):
                value = getattr(vcell, "value", None)
                if getattr(vcell, "data_type", None) == "e" and value is not None:
                    value = ErrorCell(str(value))
                elif value is None:
                    fvalue = getattr(fcell, "value", None)
                    if isinstance(fvalue, str) and fvalue.startswith("="):
                        value = FormulaCell(fvalue)
                    elif fvalue is not None and not isinstance(fvalue, str):
                        value = FormulaCell(str(fvalue))
                out.append("" if value is None else value)
            grid.append(out)
        first_row = _first_row_index(values_wb[name])
        return grid, (first_row, 0)
    finally:
        values_wb.close()
        formulas_wb.close()


def _first_row_index(ws) -> int:
    for row in ws.iter_rows():
        for cell in row:
            if hasattr(cell, "row"):
                return cell.row - 1
    return 0


def _table_from_grid(
    sheet: str, grid: list[list[object]], origin: tuple[int, int]
) -> tuple[Table | None, list[InputIssue]]:
    issues: list[InputIssue] = []
    header_idx = next(
        (i for i, row in enumerate(grid) if any(not is_blank(v) for v in row)), None
    )
    if header_idx is None:
        return Table(sheet, {}, 1), []
    header_row = origin[0] + header_idx + 1
    headers: dict[str, str] = {}
    positions: list[tuple[int, str]] = []
    for j, raw in enumerate(grid[header_idx]):
        if is_blank(raw):
            continue
        letter = column_letter(origin[1] + j)
        if not isinstance(raw, str):
            issues.append(InputIssue(CellRef(sheet, header_row, letter),
                                     f"expected a header name (text), got {raw!r}"))
            continue
        name = " ".join(raw.split()).lower().replace(" ", "_")
        if name in headers:
            issues.append(InputIssue(CellRef(sheet, header_row, letter, name),
                                     f"duplicate header {name!r} (also column {headers[name]})"))
            continue
        headers[name] = letter
        positions.append((j, name))
    table = Table(sheet, headers, header_row)
    header_cols = {j for j, _ in positions}
    for i in range(header_idx + 1, len(grid)):
        row = grid[i]
        excel_row = origin[0] + i + 1
        if all(is_blank(v) for v in row):
            continue
        for j, v in enumerate(row):
            if j not in header_cols and not is_blank(v):
                issues.append(InputIssue(
                    CellRef(sheet, excel_row, column_letter(origin[1] + j)),
                    "a value in a column without a header; add a header or clear the cell"))
                break
        values = {name: (row[j] if j < len(row) else None) for j, name in positions}
        table.rows.append((excel_row, values))
    return table, issues
