"""Rows streamed straight into the worksheets of a saved xlsx workbook, as SpreadsheetML text.

openpyxl builds an element tree per cell; for the report's large sheets that was most of the
time of writing a report. Here a row is one string made from a template, each distinct text
is escaped once, and the rows go block by block into the zip entry of their sheet, so memory
stays flat. Everything else of the workbook (styles, header rows, views, filters, widths)
is what the library that saved it wrote; `fill_sheets` only inserts rows before the end of
a sheet's `sheetData`.

Text is always an inline string cell (`t="inlineStr"`): a value such as `=HYPERLINK(...)`,
`+1`, `@x` or `#N/A` is text, never a formula or an error value.
"""

from __future__ import annotations

import io
import math
import numbers
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.utils import get_column_letter

from allocator.safetext import cell_text

# Rows of one block, the style id of each column's numbers, and of each column's texts;
# optionally each row's height in points (None: the default), see `rows_xml`.
RowBlock = (tuple[Sequence[Sequence[Any]], Sequence[int], Sequence[int]]
            | tuple[Sequence[Sequence[Any]], Sequence[int], Sequence[int], Sequence[float | None]])

_MAIN_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_SHEET_DATA_END = "</sheetData>"
# A carriage return is a character reference: a parser would turn a literal one into a line feed.
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_EMPTY = "/>"  # a cell with no value keeps its place in the row's template
# Deflate is the one cost here outside Python; at 10,000 programs level 1 takes 0.4 s less
# than zlib's default (of 1.9 s for the whole report) for a quarter more bytes (5.0 vs 4.0 MB).
COMPRESS_LEVEL = 1
# A sheet's stated used range would be stale once rows are added (openpyxl's read-only mode
# trusts it); without one, readers find the range from the rows.
_DIMENSION = re.compile(r"<dimension\b[^>]*/>")


def xml_text(value: str) -> str:
    """Text as XML character data, cut to what a cell holds (safetext.cell_text); characters
    XML 1.0 cannot hold become U+FFFD."""
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", cell_text(value)).translate(_ESCAPES)


def number_text(value: float) -> str | None:
    """A float as written: whole numbers as integers, others the shortest exact repr; NaN/inf none."""
    if not math.isfinite(value):
        return None
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _style_attr(style: int) -> str:
    return f' s="{style}"' if style else ""


def _text_tail(value: str, style: str) -> str:
    space = ' xml:space="preserve"' if value != value.strip() else ""
    return f'{style} t="inlineStr"><is><t{space}>{xml_text(value)}</t></is></c>'


def cell_tails(values: Iterable[Any], number_style: int = 0, text_style: int = 0) -> list[str]:
    """Each value's cell XML after `<c r="A1"`: a number, an inline string, or nothing.

    None and "" are empty cells; a bool is the text yes/no; a number is a number. Each distinct
    text is escaped once, each distinct float shown once (ids, names, shares repeat on every
    row of a ledger).
    """
    num, txt = _style_attr(number_style), _style_attr(text_style)
    texts: dict[str, str] = {}
    floats: dict[float, str] = {}
    out: list[str] = []
    append = out.append
    for v in values:
        cls = v.__class__
        if cls is str:
            tail = texts.get(v)
            if tail is None:
                tail = texts[v] = _text_tail(v, txt) if v else _EMPTY
            append(tail)
        elif cls is int:
            append(f"{num}><v>{v}</v></c>")
        elif cls is float:
            tail = floats.get(v)
            if tail is None:
                shown = number_text(v)
                tail = floats[v] = _EMPTY if shown is None else f"{num}><v>{shown}</v></c>"
            append(tail)
        elif v is None:
            append(_EMPTY)
        else:
            append(_other_tail(v, num, txt))
    return out


def _other_tail(value: Any, num: str, txt: str) -> str:
    """Values rarely met in a table: bools, numpy scalars, Decimals, subclasses, other objects."""
    if isinstance(value, bool | np.bool_):
        return _text_tail("yes" if value else "no", txt)
    if isinstance(value, str):  # e.g. a str enum: its value, not its repr
        return _text_tail(str.__str__(value), txt) if value else _EMPTY
    if isinstance(value, numbers.Integral):
        return f"{num}><v>{int(value)}</v></c>"
    if isinstance(value, numbers.Real | Decimal):
        shown = number_text(float(value))
        return _EMPTY if shown is None else f"{num}><v>{shown}</v></c>"
    return _text_tail(str(value), txt) if str(value) else _EMPTY


def row_template(ncols: int) -> str:
    """`str.format` template of a row: {0} is the row number, {1}..{ncols} the cell tails."""
    cells = "".join(f'<c r="{get_column_letter(i + 1)}{{0}}"{{{i + 1}}}' for i in range(ncols))
    return '<row r="{0}">' + cells + "</row>"


def rows_xml(first_row: int, ncols: int, blocks: Iterable[RowBlock]) -> Iterator[str]:
    """The XML of the rows, one string per block, numbered from `first_row`.

    A block may carry a fourth element: each row's height in points (None: the default),
    for rows whose wrapped text takes several lines (readers do not size them on opening).
    """
    template = row_template(ncols).format
    r = first_row
    for rows, number_styles, text_styles, *rest in blocks:
        if not rows:
            continue
        heights = rest[0] if rest else None
        columns = list(zip(*rows, strict=True))
        if len(columns) != ncols:
            raise ValueError(f"rows of {len(columns)} cells in a sheet of {ncols} columns")
        tails = [cell_tails(col, n, t)
                 for col, n, t in zip(columns, number_styles, text_styles, strict=True)]
        if heights is None:
            yield "".join([template(r + i, *cells)
                           for i, cells in enumerate(zip(*tails, strict=True))])
        else:
            yield "".join([_with_height(template(r + i, *cells), h) for i, (cells, h) in
                           enumerate(zip(zip(*tails, strict=True), heights, strict=True))])
        r += len(rows)


def _with_height(row: str, height: float | None) -> str:
    """A row's XML with a fixed height (points), when it has one."""
    if height is None:
        return row
    return row.replace(">", f' ht="{height:.1f}" customHeight="1">', 1)


def sheet_parts(zf: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name -> its part (zip entry name), as the workbook and its relationships say."""
    rels = ElementTree.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
    target = {rel.get("Id"): rel.get("Target", "") for rel in rels.iter(f"{_PKG_REL_NS}Relationship")}
    book = ElementTree.fromstring(zf.read("xl/workbook.xml"))
    parts = {}
    for sheet in book.iter(f"{_MAIN_NS}sheet"):
        t = target[sheet.get(f"{_REL_NS}id")]
        parts[sheet.get("name", "")] = t.lstrip("/") if t.startswith("/") else f"xl/{t}"
    return parts


def fill_sheets(path: Path, bodies: Mapping[str, Iterator[str]]) -> None:
    """Rewrite the saved workbook at `path` with each body's row XML added to its sheet.

    A body goes after the rows the sheet has, before `</sheetData>`; every other part is
    copied as it is. The workbook is read into memory first: without its large sheets it is
    small.
    """
    shell = zipfile.ZipFile(io.BytesIO(Path(path).read_bytes()))
    parts = sheet_parts(shell)
    fill = {parts[name]: body for name, body in bodies.items()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as out:
        for info in shell.infolist():
            data = shell.read(info)
            if info.filename not in fill:
                out.writestr(info.filename, data)
                continue
            head, sep, tail = data.decode("utf-8").partition(_SHEET_DATA_END)
            if not sep:
                raise ValueError(f"{info.filename} has no sheetData with a row to follow")
            with out.open(info.filename, "w") as fh:
                fh.write(_DIMENSION.sub("", head).encode("utf-8"))
                for chunk in fill[info.filename]:
                    fh.write(chunk.encode("utf-8"))
                fh.write((sep + tail).encode("utf-8"))
