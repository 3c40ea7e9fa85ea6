"""How a printed table looks: the one place every workbook takes its number formats, widths and
print set-up from (result report, compare, diagnosis, settlement).

A table is a sheet with one header row and typed columns. Each column has a *kind* (money,
percent, price, trainees, count, value, ratio, text, ...) and the kind decides its number
format. Widths are computed from the values as they will be shown, so no cell shows `###` and
no number is shown in scientific notation. The print set-up fits the table to one page wide
(landscape when it is wide), repeats the header row on every page and puts the sheet name and
"Page n of m" in the footer.

Two ways in, both here (the one module that writes Excel for the engine):
- `Table` and `write_tables`: streamed workbooks (the result report, the settlement workbook):
  each sheet's header, widths and print set-up first, its rows after the save, block by block;
- `write_table`, `write_frame` and `print_ready`: an ordinary openpyxl workbook (compare,
  sweep, frontier, diagnosis): write a table, or make an already written sheet print-ready.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.properties import PageSetupProperties

from allocator.atomic import atomic_path
from allocator.safetext import cell_text
from allocator.xlsxrows import RowBlock, fill_sheets, rows_xml

if TYPE_CHECKING:
    from allocator.round import Round

# Prices are shown as outcome value per this many currency units (a per-unit price is ~1e-5).
PRICE_STEP = 10_000
# Below this (outcome value per PRICE_STEP currency units) a price is solver noise: shown as 0.
PRICE_ZERO = 5e-4
TOTAL_LABEL = "Total"

# The default font named: a font without a name prints in the reader's default (often serif).
HEADER_FONT = Font(name="Calibri", size=11, bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
TOTAL_FONT = Font(name="Calibri", size=11, bold=True)
HEADER_ALIGNMENT = Alignment(horizontal="center", vertical="center", wrap_text=True)
WRAP_ALIGNMENT = Alignment(vertical="top", wrap_text=True)
TOP_ALIGNMENT = Alignment(vertical="top")

# Text columns wider than this wrap instead of growing (descriptions, reasons, sentences).
MAX_WIDTH = 45
MIN_WIDTH = 8
# A4 (openpyxl paperSize 9) with narrow margins, in character widths of the default font
# (Calibri 11: 7 px a character, 96 px an inch) and in points.
PAPER_A4 = 9
_MARGIN_IN = {"left": 0.4, "right": 0.4, "top": 0.5, "bottom": 0.6, "header": 0.25, "footer": 0.3}
_PORTRAIT_IN = (8.27 - 0.8, 11.69 - 1.1)
_ROW_PT = 12.8  # a row of 11 pt text as LibreOffice and Excel print it
# Tall tables shrink to at most this scale before they take another page (6 pt text).
MIN_SCALE = 0.55


def price_shown(per_unit: float | None) -> float | None:
    """A shadow price per currency unit as outcome value per PRICE_STEP units; noise -> 0."""
    if per_unit is None or not math.isfinite(float(per_unit)):
        return None
    p = float(per_unit) * PRICE_STEP
    return 0.0 if abs(p) < PRICE_ZERO else p


class Formats:
    """Number format code per kind, for one round's currency and decimals."""

    def __init__(self, currency: str = "", decimals: int = 0):
        code = re.sub(r'["\\\[\];]', "", currency or "").strip()  # nothing that breaks a format
        decimals = min(6, max(0, decimals))
        frac = "." + "0" * decimals if decimals else ""
        suffix = f' "{code}"' if code else ""
        self.currency = code
        self.codes = {
            "money": f"#,##0{frac}{suffix}",
            "money2": f"#,##0.{'0' * max(2, decimals)}{suffix}",
            "percent": "0.0%",
            "trainees": "#,##0.00",
            "ratio": "0.00",
            "count": "#,##0",
            "value": "#,##0.00",
            "price": "#,##0.000",
            "seconds": "0.00",
            "number": "#,##0.######",
            "general": "#,##0.####",
            "text": "@",
        }

    def code(self, kind: str | None) -> str | None:
        if not kind or kind == "text":
            return None
        return self.codes.get(kind, kind if any(c in kind for c in "0#%") else None)

    @classmethod
    def of_round(cls, rnd: Any) -> Formats:
        """The round's currency; decimals from its rounding unit, budgets and contributions."""
        s = rnd.settings
        dec = max([_decimals(s.rounding_unit)] + [_decimals(b.amount) for b in rnd.budgets]
                  + [_decimals(c.amount) for c in rnd.contributions])
        return cls(s.currency, dec)


def _decimals(d: Decimal) -> int:
    return max(0, -d.normalize().as_tuple().exponent)  # type: ignore[operator]


# --- what a cell shows ------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _parsed(code: str) -> tuple[str, bool, int, bool, str]:
    """A number format as (kind, percent, places, optional digits, suffix text)."""
    suffix = " ".join(re.findall(r'"([^"]*)"', code))
    body = re.sub(r'"[^"]*"', "", code)
    frac = body.split(".")[1] if "." in body else ""
    if "%" in body:
        return "fixed", True, frac.count("0"), False, ""
    if "0" in body:
        return "fixed", False, frac.count("0") + frac.count("#"), "#" in frac, suffix
    return "general", False, 0, False, ""


def shown(value: Any, code: str | None) -> str:
    """The text a number format shows for a value (close enough to size a column)."""
    if value is None:
        return ""
    cls = value.__class__
    if cls is str:
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        value = float(value)
    if not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return ""
    kind, percent, places, optional, suffix = _parsed(code or "General")
    if kind == "general":
        return f"{value:,.10g}"
    if percent:
        return f"{value * 100:,.{places}f}%"
    text = f"{value:,.{places}f}"
    if optional and "." in text:  # optional digits: trailing zeros are not shown
        text = text.rstrip("0").rstrip(".")
    return f"{text} {suffix}" if suffix else text


def cell_width(value: Any, code: str | None) -> float:
    """Characters a value needs when shown with `code` (numbers: room for bold and rounding)."""
    text = shown(value, code)
    longest = max((len(line) for line in text.split("\n")), default=0)
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return longest * 1.1 + 2.5
    return longest + 1.0


def column_widths(columns: Sequence[str], rows: Iterable[Sequence[Any]],
                  codes: Sequence[str | Callable[[int, Sequence[Any]], str | None] | None]
                  ) -> list[float]:
    """Widths (characters) that show every sampled value whole: numbers never as `###`.

    `codes`: a column's number format, or a function of (row position, row) giving it. Text
    longer than MAX_WIDTH wraps (see `wrap_columns`).
    """
    widest = [_header_width(str(c)) for c in columns]
    for n, row in enumerate(rows):
        for i, v in enumerate(row[:len(widest)]):
            code = codes[i]
            if callable(code):
                code = code(n, row)
            widest[i] = max(widest[i], cell_width(v, code))
    return [float(min(MAX_WIDTH, max(MIN_WIDTH, math.ceil(w)))) for w in widest]


def _header_width(header: str) -> float:
    """Room for a header: whole, or (words of a long one wrap) its longest word; plus the
    filter button."""
    words = header.split()
    if len(header) <= 14 or len(words) == 1:
        return len(header) + 3.0
    return max(max(len(w) for w in words), 11) + 3.0


def header_lines(columns: Sequence[str], widths: Sequence[float]) -> int:
    """Lines the header row takes when long headers wrap at their spaces."""
    return max([row_lines([str(c)], [w - 2], [True]) for c, w in zip(columns, widths,
                                                                     strict=False)] or [1])


def wrap_columns(widths: Sequence[float]) -> list[bool]:
    """Columns at the cap: their text wraps within the column."""
    return [w >= MAX_WIDTH for w in widths]


# --- print set-up -----------------------------------------------------------------------------


def _printable_chars(landscape: bool) -> float:
    w = _PORTRAIT_IN[1] if landscape else _PORTRAIT_IN[0]
    return w * 96 / 7 - 2  # character widths of the default font


def _printable_pt(landscape: bool) -> float:
    h = _PORTRAIT_IN[0] if landscape else _PORTRAIT_IN[1]
    return h * 72 - 30  # the footer's line


def is_landscape(widths: Sequence[float], rows: int = 0) -> bool:
    """Landscape when the table is wider than a portrait page, unless portrait takes fewer
    pages (a tall table only a little too wide for portrait)."""
    return sum(widths) + 1 > _printable_chars(False)


def pages_tall(widths: Sequence[float], rows: float, *, landscape: bool | None = None,
               row_pt: float = _ROW_PT) -> int:
    """Pages tall so the table prints at no less than MIN_SCALE (and one page wide)."""
    if landscape is None:
        landscape = is_landscape(widths, rows)
    fit_wide = min(1.0, _printable_chars(landscape) / max(1.0, sum(widths) + 1))
    scale = min(fit_wide, MIN_SCALE)  # a very wide table: its width sets the scale
    return max(1, math.ceil(rows * row_pt * scale / _printable_pt(landscape)))


def print_setup(ws: Any, widths: Sequence[float], rows: float, *, title_rows: int | None = 1,
                landscape: bool | None = None, pages: int | None = None,
                footer: str = "") -> None:
    """Fit to one page wide and `pages` tall (computed if None), header row on every page,
    footer with the sheet's name and 'Page n of m'. Works on a write-only sheet (before its
    first row) as on an ordinary one."""
    if landscape is None:
        landscape = is_landscape(widths, rows)
    ws.page_setup.orientation = "landscape" if landscape else "portrait"
    ws.page_setup.paperSize = PAPER_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = pages if pages is not None else pages_tall(widths, rows,
                                                                           landscape=landscape)
    props = ws.sheet_properties
    if props.pageSetUpPr is None:
        props.pageSetUpPr = PageSetupProperties(fitToPage=True)
    else:
        props.pageSetUpPr.fitToPage = True
    for side, inches in _MARGIN_IN.items():
        setattr(ws.page_margins, side, inches)
    if title_rows:
        ws.print_title_rows = f"1:{title_rows}"
    ws.oddFooter.left.text = "&A"
    ws.oddFooter.center.text = "Page &P of &N"
    if footer:
        ws.oddFooter.right.text = footer.replace("&", "&&")[:100]
    ws.print_options.gridLines = False


def nothing_to_print(columns: int) -> str:
    """A print range of one empty cell beside the table: the sheet stays on screen and its page
    set-up stays ready, but printing the workbook leaves it out (an empty page is not printed,
    by Excel or LibreOffice); clearing the print range prints it whole."""
    return f"{get_column_letter(columns + 2)}1"


# --- ordinary (not streamed) workbooks -------------------------------------------------------


def _cell_value(value: Any) -> Any:
    """A Python/numpy/Decimal value as a cell value: blank for None/NaN, text never a formula."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def write_table(wb: Any, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                kinds: Mapping[str, str | None] | None = None, *, formats: Formats | None = None,
                total: bool | Sequence[str] = False, footer: str = "",
                pages: int | None = None) -> Any:
    """A sheet with one table: header row (bold, frozen, filtered), typed values with the
    format of each column's kind, a total row under the money columns when `total` (True: every
    money column; or the columns named), widths from the values, print set-up."""
    from allocator.safetext import append_text_row

    formats = formats or Formats()
    kinds = dict(kinds or {})
    ws = wb.create_sheet(title)
    append_text_row(ws, list(columns))  # headers may be variant names: text, never a formula
    data = [[_cell_value(v) for v in row] for row in rows]
    for row in data:
        append_text_row(ws, row)  # a name like "=HYPERLINK(...)" stays text
    summed = [c for c in columns if kinds.get(c) in ("money", "money2")] if total is True \
        else list(total or [])
    if summed:
        sums: list[Any] = [None] * len(columns)
        sums[0] = TOTAL_LABEL
        for j, c in enumerate(columns):
            if c in summed:
                vals = [r[j] for r in data if isinstance(r[j], int | float)]
                sums[j] = _exact_sum(vals)
        ws.append(sums)
        for cell in ws[ws.max_row]:
            cell.font = TOTAL_FONT
    for j, c in enumerate(columns, start=1):
        code = formats.code(kinds.get(c))
        if code:
            for (cell,) in ws.iter_rows(min_row=2, min_col=j, max_col=j):
                cell.number_format = code
    print_ready(ws, data_rows=len(data), footer=footer, pages=pages)
    return ws


def _exact_sum(values: Sequence[int | float]) -> int | float:
    """Sum as the decimals written (no float drift); int when whole."""
    s = sum((Decimal(repr(v)) if isinstance(v, float) else Decimal(v) for v in values), Decimal(0))
    return int(s) if s == s.to_integral_value() else float(s)


def money_format(rnd: Round) -> str:
    """Whole units when the rounding unit is whole, else cents."""
    unit = rnd.settings.rounding_unit
    return "#,##0" if unit == unit.to_integral_value() else "#,##0.00"


def write_frame(wb: Any, title: str, df: Any, *, money_columns: Iterable[str] = (),
                money_from: int | None = None, percent_from: int | None = None,
                percent_columns: Iterable[str] = (), number_format: str = "#,##0",
                kinds: dict[str, str] | None = None, formats: Any = None, total: bool = False,
                footer: str = "", words: bool = False):
    """A DataFrame as one print-ready table per sheet (`write_table`): bold frozen filtered header, typed
    numbers with their formats, widths that show every value, a total row under the money.
    `words`: headers in words (`outcome value`, not `outcome_value`), so long ones wrap."""
    columns = [str(c) for c in df.columns]
    shown = [c.replace("_", " ") for c in columns] if words else columns
    money = set(money_columns)
    percent = set(percent_columns)
    kind_of: dict[str, str] = {}
    for j, name in enumerate(columns, start=1):
        if name in money or (money_from is not None and j > money_from):
            kind_of[name] = "money"
        elif name in percent or (percent_from is not None and j > percent_from):
            kind_of[name] = "percent"
    kind_of.update(kinds or {})
    formats = formats or Formats()
    if formats.currency == "" and number_format != "#,##0":
        formats.codes["money"] = number_format
    kind_of = {shown[columns.index(c)]: k for c, k in kind_of.items() if c in columns}
    return write_table(wb, title, shown, df.itertuples(index=False), kind_of,
                             formats=formats, total=total, footer=footer)


def print_ready(target: Any, *, data_rows: int | None = None, footer: str = "",
                pages: int | None = None, header: bool = True) -> None:
    """Make an ordinary openpyxl sheet (or every sheet of a workbook) print-ready in place:
    bold frozen filtered header row, widths from the shown values, wrapping long text, fit to
    one page wide, header repeated on every page, page numbers in the footer.

    `data_rows`: rows under the header the filter covers (default: all; pass it when a total
    row follows, so sorting never moves the total). Reads every cell: meant for sheets of up
    to some thousands of rows (the report's streamed ledgers use `print_setup` instead).
    """
    if hasattr(target, "worksheets"):
        for ws in target.worksheets:
            print_ready(ws, footer=footer, header=header)
        return
    ws = target
    if ws.max_row < 1 or ws.max_column < 1:
        return
    ncols = ws.max_column
    columns = [c.value if c.value is not None else "" for c in ws[1]] if header else [""] * ncols
    codes: list[str | None] = [None] * ncols
    body = list(ws.iter_rows(min_row=2 if header else 1))
    for row in body[:50]:
        for j, cell in enumerate(row):
            if codes[j] is None and isinstance(cell.value, int | float) and \
                    cell.number_format != "General":
                codes[j] = cell.number_format
    values = ([c.value for c in row] for row in body)
    widths = column_widths([str(c) for c in columns], values, codes)
    wraps = wrap_columns(widths)
    for j, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(j)].width = w
    for row in body:
        for j, cell in enumerate(row):
            if isinstance(cell.value, float) and cell.number_format == "General":
                cell.number_format = "#,##0.####"  # never scientific notation
            if wraps[j] and isinstance(cell.value, str):
                cell.alignment = WRAP_ALIGNMENT
            elif any(wraps):  # top-aligned with the wrapped text, so a row reads across
                cell.alignment = TOP_ALIGNMENT
        n = _lines(row, widths, wraps)
        if n > 1:
            ws.row_dimensions[row[0].row].height = line_height(n)
    if header:
        for cell in ws[1]:
            cell.font = HEADER_FONT
            cell.fill = HEADER_FILL
            cell.alignment = HEADER_ALIGNMENT
        lines = header_lines([str(c) for c in columns], widths)
        if lines > 1:
            ws.row_dimensions[1].height = line_height(lines)
        ws.freeze_panes = "A2"
        last = 1 + (data_rows if data_rows is not None else len(body))
        ws.auto_filter.ref = f"A1:{get_column_letter(ncols)}{max(1, last)}"
    lines = sum(rows_of(_lines(r, widths, wraps)) for r in body) + 1
    print_setup(ws, widths, lines, title_rows=1 if header else None, pages=pages, footer=footer)


def _lines(row: Sequence[Any], widths: Sequence[float], wraps: Sequence[bool]) -> int:
    return row_lines([c.value for c in row], widths, wraps)


def line_height(lines: int) -> float:
    """Points a row of `lines` wrapped lines of 11 pt text needs."""
    return round(lines * 13.0 + 2.0, 1)


def rows_of(lines: int) -> float:
    """A row of `lines` wrapped lines, in default rows (what `pages_tall` counts)."""
    return 1.0 if lines <= 1 else line_height(lines) / _ROW_PT


def row_lines(values: Sequence[Any], widths: Sequence[float], wraps: Sequence[bool]) -> int:
    """Lines a row takes when its long text wraps."""
    n = 1
    for v, w, wrap in zip(values, widths, wraps, strict=False):
        if wrap and isinstance(v, str):
            # proportional text: a character is about 0.8 of a digit's width
            n = max(n, math.ceil(len(v) * 0.82 / max(1.0, w - 1.5)))
    return n


# --- streamed workbooks (the result report, the settlement workbook) -------------------

# A column's format is a kind (resolved per workbook, see Formats) or a function of the row.
# The function gets the row's position and the row.
FormatSpec = str | Callable[[int, Sequence[Any]], str | None] | None


# Rows of a large table are made and written this many at a time: memory stays flat.
BLOCK_ROWS = 5_000


class Rows:
    """A large table's rows, made block by block while they are written (never all at once).

    `make(size)` returns a fresh iterator over blocks (lists of rows) of about `size` rows;
    `count` is known before any row is made, so the sheet's filter can be set up front.
    """

    def __init__(self, count: int, make: Callable[[int], Iterator[list[Sequence[Any]]]]):
        self.count = count
        self.make = make


class Table:
    """One sheet: header, data rows, optional total row, and a number format per column.

    `rows` is a list, or `Rows` made while they are written (the large ledgers, so their
    memory stays flat).
    """

    def __init__(self, name: str, columns: list[str], rows: list[list[Any]] | Rows,
                 formats: dict[str, FormatSpec] | None = None, total: list[Any] | None = None):
        self.name = name
        self.columns = columns
        self._rows = rows
        self.formats = formats or {}
        self.total = total
        self.extra_widths: dict[int, float] = {}  # widths of columns right of the table

    def __len__(self) -> int:
        return len(self._rows) if isinstance(self._rows, list) else self._rows.count

    def blocks(self, size: int | None = None) -> Iterator[Sequence[Sequence[Any]]]:
        size = size or BLOCK_ROWS
        if isinstance(self._rows, Rows):
            return self._rows.make(size)
        return (self._rows[i:i + size] for i in range(0, len(self._rows), size))

    def iter_rows(self) -> Iterator[Sequence[Any]]:
        return itertools.chain.from_iterable(self.blocks())

    def frame(self) -> pd.DataFrame:
        """The sheet as a DataFrame: data rows, then the total row (first cell `Total`) if any."""
        rows = [list(r) for r in self.iter_rows()] + ([self.total] if self.total is not None else [])
        return pd.DataFrame(rows, columns=self.columns)


def row_kinds(kinds: list[str | None]) -> Callable[[int, Sequence[Any]], str | None]:
    """Format of a key/value table's value cell: one kind per row."""
    return lambda i, _row: kinds[i]


def write_tables(path: Path, tables: Sequence[Table], formats: Formats, *, footer: str = "",
                 printed: Callable[[str], bool] = lambda _name: True,
                 before_save: Callable[[Any], None] | None = None) -> Path:
    """Write `tables`, a sheet each, to `path` atomically (an old file survives any failure).

    The sheets are streamed: header, widths and print set-up first, the rows after the save
    (allocator.xlsxrows), so a ledger of millions of rows never sits in memory. A sheet for
    which `printed(name)` is false keeps its page set-up but prints nothing until its print
    range is cleared. `before_save(workbook)` may add to the sheets (charts) before the save."""
    styles = StyleIds(formats)
    wb = Workbook(write_only=True)
    try:
        bodies = {t.name: rows_xml(2, len(t.columns), write_sheet(wb, t, styles, footer,
                                                                  printed(t.name)))
                  for t in tables}
        if before_save is not None:
            before_save(wb)
        with atomic_path(path) as tmp:
            wb.save(tmp)
            fill_sheets(tmp, bodies)
    except BaseException:
        discard(wb)
        raise
    return path


def discard(wb: Any) -> None:
    """Close and delete the streamed sheets of a workbook that will never be saved.

    A write-only sheet streams into its own temporary file; left to the garbage collector it
    would write into a closed file (noise on stderr) and stay on disk until exit.
    """
    for ws in wb.worksheets:
        with contextlib.suppress(Exception):
            if not ws.closed:
                ws.close()
        writer = getattr(ws, "_writer", None)  # openpyxl keeps the stream's file here
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.cleanup()


HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")


def _text(value: str) -> str:
    # Characters XML 1.0 cannot hold would make openpyxl refuse the whole workbook.
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", cell_text(value))


def _header_cell(ws: Any, name: str) -> WriteOnlyCell:
    cell = WriteOnlyCell(ws, _text(name))
    cell.data_type = "s"  # literal text, never a formula or an error value
    cell.font = HEADER_FONT
    cell.fill = HEADER_FILL
    cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    return cell


class StyleIds:
    """Style ids of the workbook (a cell's `s`), one per number format and weight.

    openpyxl registers a style when a cell asks for its id; the data rows are written after
    the workbook is saved, so every style they use is asked for before.
    """

    def __init__(self, formats: Formats):
        self.formats = formats
        self._ids: dict[tuple[str | None, bool, bool], int] = {}

    def of(self, ws: Any, kind: str | None, bold: bool = False, wrap: bool = False) -> int:
        code = self.formats.code(kind)
        key = (code, bold, wrap)
        if key not in self._ids:
            cell = WriteOnlyCell(ws)
            if code:
                cell.number_format = code
            if bold:
                cell.font = TOTAL_FONT
            # Top-aligned, so a row whose text wraps reads as one line across.
            cell.alignment = WRAP_ALIGNMENT if wrap else TOP_ALIGNMENT
            self._ids[key] = cell.style_id
        return self._ids[key]


def _widths(table: Table, formats: Formats) -> list[float]:
    """Column widths from the header and the first few hundred rows (and the total row):
    every number as its format shows it, so no cell shows `###`."""
    sample = list(itertools.islice(itertools.chain.from_iterable(table.blocks(500)), 500))
    sample += [table.total] if table.total else []
    codes = []
    for c in table.columns:
        spec = table.formats.get(c)
        if callable(spec):
            codes.append(lambda n, row, spec=spec: formats.code(spec(n, row)))
        else:
            codes.append(formats.code(spec))
    return column_widths(table.columns, sample, codes)


def write_sheet(wb: Workbook, table: Table, styles: StyleIds, footer: str = "",
                 printed: bool = True) -> Iterator[RowBlock]:
    """Header, view, widths, filter and print set-up of a table's sheet; the rest as blocks to
    write later. A sheet not `printed` keeps its page set-up but an empty print range.

    The data and total rows are written by allocator.xlsxrows once the workbook is saved;
    the blocks come with the style ids, which are registered here, before the save.
    """
    ws = wb.create_sheet(table.name)
    # A write-only sheet takes its view, column widths and page set-up before the first row.
    ws.freeze_panes = "A2"
    widths = _widths(table, styles.formats)
    for i, width in enumerate(widths):
        ws.column_dimensions[get_column_letter(i + 1)].width = width
    for col, width in table.extra_widths.items():  # at least: the Dashboard's chart grid
        widths[col - 1] = max(widths[col - 1], width)
        ws.column_dimensions[get_column_letter(col)].width = widths[col - 1]
    wraps = wrap_columns(widths)
    lines = len(table) + 2.0
    if any(wraps):  # wrapped text: rows as tall as their lines (a large ledger: as its first)
        sample = list(itertools.islice(table.iter_rows(), 1000))
        per_row = sum(rows_of(row_lines(r, widths, wraps)) for r in sample) / \
            max(1, len(sample))
        lines = len(table) * per_row + 2
    print_setup(ws, widths, lines, footer=footer)
    if not printed:
        ws.print_area = nothing_to_print(len(table.columns))
    lines = header_lines(table.columns, widths)
    if lines > 1:  # a long header wraps: the row grows, or its second line hides under row 2
        ws.row_dimensions[1].height = line_height(lines)
    ws.append([_header_cell(ws, name) for name in table.columns])
    # The filter covers header and data rows only, so sorting never moves the total row.
    ws.auto_filter.ref = f"A1:{get_column_letter(len(table.columns))}{len(table) + 1}"
    return _row_blocks(ws, table, styles, wraps)


def _row_blocks(ws: Any, table: Table, styles: StyleIds,
                wraps: Sequence[bool] = ()) -> Iterator[RowBlock]:
    specs = [table.formats.get(c) for c in table.columns]
    text_ids = [styles.of(ws, None, wrap=w) for w in wraps] or _PLAIN_TEXT * len(specs)
    blocks: Iterable[RowBlock]
    if any(callable(s) for s in specs):
        blocks = _styled_per_row(ws, table, specs, styles, text_ids)
    else:
        ids = [styles.of(ws, s if isinstance(s, str) else None) for s in specs]
        blocks = ((block, ids, text_ids) for block in table.blocks())
    if any(wraps):
        blocks = _with_heights(blocks, _widths_of(ws, len(specs)), wraps)
    if table.total is None:
        return iter(blocks)
    bold = styles.of(ws, None, bold=True)
    total_ids = [styles.of(ws, s if isinstance(s, str) else None, bold=True) for s in specs]
    return itertools.chain(blocks, [([table.total], total_ids, [bold] * len(specs))])


_PLAIN_TEXT = [0]  # text of a data row has no style of its own


def _widths_of(ws: Any, ncols: int) -> list[float]:
    return [float(ws.column_dimensions[get_column_letter(i + 1)].width or 8) for i in range(ncols)]


def _with_heights(blocks: Iterable[RowBlock], widths: list[float],
                  wraps: Sequence[bool]) -> Iterator[RowBlock]:
    """Each row's height from the lines its wrapped text takes (None: one line)."""
    for rows, nums, texts, *_ in blocks:
        heights = []
        for row in rows:
            n = row_lines(row, widths, wraps)
            heights.append(line_height(n) if n > 1 else None)
        yield rows, nums, texts, heights


def _styled_per_row(ws: Any, table: Table, specs: list[FormatSpec],
                    styles: StyleIds, text_ids: list[int]) -> list[RowBlock]:
    """Blocks of consecutive rows that share their formats (the small key/value tables)."""
    rows = list(table.iter_rows())
    ids = [tuple(styles.of(ws, s(n, row) if callable(s) else s) for s in specs)
           for n, row in enumerate(rows)]
    return [([row for _, row in group], list(key), text_ids)
            for key, group in itertools.groupby(zip(ids, rows, strict=True), key=lambda x: x[0])]


__all__ = ["PRICE_STEP", "TOTAL_LABEL", "Formats", "column_widths", "is_landscape", "money_format",
           "pages_tall", "price_shown", "print_ready", "print_setup", "shown", "wrap_columns",
           "write_frame", "write_table"]
