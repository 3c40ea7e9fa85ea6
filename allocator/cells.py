"""Turning one spreadsheet cell into one typed value, strictly.

Each parser takes the raw cell value as the reader produced it and returns the typed value,
or raises CellValueError saying what was expected. A value whose meaning is certain but
whose form is not the canonical one (a number typed as text, an id with stray spaces) is
accepted and the change is reported through the `notes` list the caller passes in.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from allocator.safetext import starts_like_formula


@dataclass(frozen=True)
class ErrorCell:
    """An Excel error value such as #DIV/0! or #N/A."""

    code: str


@dataclass(frozen=True)
class FormulaCell:
    """A formula whose result was never saved (the file was written by a program, not Excel)."""

    formula: str


class CellValueError(ValueError):
    """The cell does not hold what the column expects."""


# Characters that are invisible on screen but make two ids differ: every format character
# (Unicode category Cf: zero-width spaces and joiners, soft hyphen, bidi controls and isolates,
# BOM, tag characters, invisible operators), control characters other than white space,
# variation selectors, the combining grapheme joiner and the Hangul fillers.
_INVISIBLE = re.compile(
    # Cf and non-space Cc characters (Unicode 14), written out so import stays fast
    "[\\x00-\\x08\\x0e-\\x1b\\x7f-\\x84\\x86-\\x9f\\xad\\u0600-\\u0605\\u061c\\u06dd\\u070f"
    "\\u0890-\\u0891\\u08e2\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f"
    "\\ufeff\\ufff9-\\ufffb\\U000110bd\\U000110cd\\U00013430-\\U00013438\\U0001bca0-\\U0001bca3"
    "\\U0001d173-\\U0001d17a\\U000e0001\\U000e0020-\\U000e007f"
    # variation selectors, combining grapheme joiner, Hangul fillers
    "\\ufe00-\\ufe0f\\U000e0100-\\U000e01ef\\u034f\\u115f\\u1160\\u3164\\uffa0]"
)
_SPACES = re.compile(r"[\s\u00a0\u2007\u202f]+")
EXCEL_ERRORS = frozenset(
    {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA",
     "#SPILL!", "#CALC!", "#FIELD!", "#BLOCKED!", "#UNKNOWN!", "#CONNECT!", "#BUSY!"}
)


def is_blank(value: object) -> bool:
    """True for an empty cell or one holding only white space."""
    if value is None:
        return True
    return isinstance(value, str) and not _INVISIBLE.sub("", value).strip()


def describe(value: object) -> str:
    """A short human description of a raw cell value for error messages."""
    if isinstance(value, ErrorCell):
        return f"the error value {value.code}"
    if isinstance(value, FormulaCell):
        return f"the formula {value.formula} with no saved result"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime | date):
        return f"the date {value.isoformat()} (Excel serial {_serial(value)})"
    if isinstance(value, time):
        return f"the time of day {value.isoformat()}"
    if isinstance(value, timedelta):
        return f"the duration {value}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


_EPOCH = datetime(1899, 12, 30)
_DATE_LIKE = (datetime, date, time, timedelta)
_DATE_ADVICE = ("the cell is formatted as a date or time (Excel may have turned what was typed "
                "into one); format it as text or General and type the value again")


def _serial(value: date) -> str:
    """The number Excel stores for a date cell (what the user typed into a date-formatted cell)."""
    moment = value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
    days = (moment - _EPOCH) / timedelta(days=1)
    return str(int(days)) if days == int(days) else f"{days:.6g}"


def _reject_special(value: object) -> None:
    if isinstance(value, ErrorCell):
        raise CellValueError(f"the cell holds {describe(value)}; fix the formula or type the value")
    if isinstance(value, FormulaCell):
        raise CellValueError(
            f"the cell holds {describe(value)}; open and save the workbook in Excel "
            "or LibreOffice so the value is stored, or type the value"
        )
    if isinstance(value, str) and "#" in value and value.strip().upper() in EXCEL_ERRORS:
        raise CellValueError(f"the cell holds the error text {value.strip()!r}")


def clean_text(value: str, notes: list[str] | None = None) -> str:
    """NFKC-normalise, drop invisible characters, fold runs of white space, strip."""
    if value.isascii() and value.isprintable() and "  " not in value and value == value.strip():
        return value  # the common case: nothing NFKC, invisible characters or spacing would change
    nfkc = unicodedata.normalize("NFKC", value)
    invisible = _INVISIBLE.findall(nfkc)
    out = _SPACES.sub(" ", _INVISIBLE.sub("", nfkc)).strip()
    if notes is not None and out != value:
        if invisible:
            codes = ", ".join(sorted({f"U+{ord(ch):04X}" for ch in invisible}))
            notes.append(f"removed invisible characters ({codes})")
        elif nfkc != value:
            notes.append("normalised Unicode (NFKC)")
        elif out != value.strip():
            notes.append("folded white space")
        else:
            notes.append("removed surrounding spaces")
    return out


def _excel_number_text(value: float) -> str:
    """A non-integer float as Excel shows it (15 significant digits), e.g. 0.3 not 0.30000000000000004."""
    return format(value, ".15g")


def parse_text(value: object, notes: list[str]) -> str | None:
    """Free text (names, descriptions); numbers are written as they look."""
    _reject_special(value)
    if is_blank(value):
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return _excel_number_text(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, _DATE_LIKE):
        raise CellValueError(f"expected text, got {describe(value)}; {_DATE_ADVICE}")
    return clean_text(str(value), notes)


def parse_id(value: object, notes: list[str]) -> str | None:
    """An identifier or label: text; a number typed as 2026 is the label '2026'."""
    _reject_special(value)
    if is_blank(value):
        return None
    if isinstance(value, bool):
        raise CellValueError(f"expected an id (text), got {describe(value)}")
    if isinstance(value, _DATE_LIKE):
        raise CellValueError(
            f"expected an id or period label (text), got {describe(value)}; {_DATE_ADVICE}"
        )
    if isinstance(value, int | float) and abs(value) >= 1e15:
        # Excel keeps 15 significant digits: a longer id stored as a number has lost digits.
        raise CellValueError(
            f"expected an id, got the number {value:.15g}, which is too long to be stored as a "
            "number without losing digits; format the cell as text and type the id"
        )
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CellValueError(f"expected an id (text), got {value}")
        if value.is_integer():
            return not_formula(str(int(value)))
        return not_formula(_excel_number_text(value))
    if isinstance(value, int):
        return not_formula(str(value))
    text = clean_text(str(value), notes)
    if "," in text or ";" in text or "|" in text:
        raise CellValueError(f"expected a single id, got {text!r} (ids cannot hold , ; or |)")
    return not_formula(text)


def not_formula(text: str) -> str:
    """An id, refused when a spreadsheet could run it as a formula (see allocator.safetext)."""
    if starts_like_formula(text):
        raise CellValueError(
            f"an id cannot begin with {text[0]!r} ({text!r}): a spreadsheet opening the report or "
            "the decision record could run it as a formula; start the id with a letter or digit")
    return text


def parse_id_list(value: object, notes: list[str]) -> list[str]:
    """A comma-separated list of ids/tags; blanks between commas are dropped."""
    _reject_special(value)
    if is_blank(value):
        return []
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [parse_id(value, notes)]  # type: ignore[list-item]
    if not isinstance(value, str):
        advice = f"; {_DATE_ADVICE}" if isinstance(value, _DATE_LIKE) else ""
        raise CellValueError(f"expected a comma-separated list, got {describe(value)}{advice}")
    parts = [clean_text(p) for p in clean_text(value, notes).split(",")]
    items = [not_formula(p) for p in parts if p]
    odd = next((p for p in items if ";" in p or "|" in p), None)
    if odd is not None:  # filters use ; and |, so no id or tag can hold them
        raise CellValueError(f"expected a comma-separated list, got {odd!r}: separate the items "
                             "with commas (an id or tag cannot hold ; or |)")
    if len(items) != len(set(items)):
        seen: set[str] = set()
        dupes = sorted({p for p in items if p in seen or seen.add(p)})  # type: ignore[func-returns-value]
        raise CellValueError(f"the list names {', '.join(dupes)} more than once")
    return items


_TRUE = {"yes", "true", "1", "y"}
_FALSE = {"no", "false", "0", "n"}


def parse_bool(value: object, notes: list[str]) -> bool | None:
    """yes/no, true/false, 1/0 (any case), or an Excel boolean."""
    _reject_special(value)
    if is_blank(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = clean_text(value).lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise CellValueError(f"expected yes/no, true/false or 1/0, got {describe(value)}")


_GROUPED_SPACE = re.compile(r"^[+-]?\d{1,3}( \d{3})+([.,]\d+)?$")
_PLAIN = re.compile(r"^[+-]?(\d+)?(\.\d+)?([eE][+-]?\d+)?$")


def _number_from_text(raw: str, notes: list[str]) -> Decimal:
    # No NFKC here: it would read '10²' as 102 and fullwidth digits silently. Only invisible
    # characters, unusual spaces and the typographic minus sign are tidied.
    text = _SPACES.sub(" ", _INVISIBLE.sub("", raw)).strip().replace("\u2212", "-")
    if not text.isascii():
        raise CellValueError(f"expected a number, got {raw!r}")
    percent = text.endswith("%")
    if percent:
        text = text[:-1].strip()
    if not text:
        raise CellValueError(f"expected a number, got {raw!r}")
    if text.lower().lstrip("+-") in {"inf", "infinity", "nan", "snan", "qnan"}:
        raise CellValueError(f"expected a finite number, got {raw!r}")
    compact = text
    if " " in text:
        if not _GROUPED_SPACE.match(text):
            raise CellValueError(f"expected a number, got {raw!r}")
        compact = text.replace(" ", "")
    value = _decimal_from_separators(compact, raw)
    if value == 0:
        value = Decimal(0)  # drop a huge exponent such as 0e999999999
    elif not -20 <= value.adjusted() <= 20:  # before any arithmetic on a huge exponent
        raise CellValueError(out_of_range(raw))
    if percent:
        value = value / 100
    in_range(value, raw)
    notes.append(f"read the text {raw!r} as the number {_plain(value)}")
    return value


# The sizes a number cell may hold, typed as a number or as text alike (docs/limits.md): 0, or
# from MIN_NUMBER up to below MAX_NUMBER. HiGHS, the solver, drops coefficients below 1e-9 and
# refuses those of 1e15 or more; Excel keeps 15 significant digits, so a figure of 1e15 or more
# cannot be typed exactly anyway.
MIN_NUMBER = Decimal("1e-9")
MAX_NUMBER = Decimal("1e15")
MAX_SHOWN = f"1e{MAX_NUMBER.adjusted()}"
NUMBER_RANGE = (f"0, or a size from 0.000000001 (1e{MIN_NUMBER.adjusted()}) up to below "
                f"1,000,000,000,000,000 ({MAX_SHOWN})")


def out_of_range(raw: object) -> str:
    """The message for a number cell outside NUMBER_RANGE."""
    shown = f"{raw!r}" if isinstance(raw, str) else f"{raw:g}" if isinstance(raw, float) else str(raw)
    return (f"expected a number, got {shown}, which is out of range: a number cell holds "
            f"{NUMBER_RANGE} (see docs/limits.md)")


def in_range(value: Decimal, raw: object) -> Decimal:
    """`value`, refused when it lies outside NUMBER_RANGE."""
    if value != 0 and not MIN_NUMBER <= abs(value) < MAX_NUMBER:
        raise CellValueError(out_of_range(raw))
    return value


def _decimal_from_separators(text: str, raw: str) -> Decimal:
    """Resolve thousands/decimal separators; refuse what a reader could take two ways."""
    if _PLAIN.match(text) and text not in {"", "+", "-", "."}:
        dots = text.count(".")
        if dots == 1 and re.fullmatch(r"[+-]?[1-9]\d{0,2}\.\d{3}", text):
            raise CellValueError(
                f"{raw!r} is ambiguous: it reads as {text} with a decimal point or as "
                f"{text.replace('.', '')} with a thousands separator; type the number "
                "without separators or store it as a number"
            )
        return Decimal(text)
    commas, dots = text.count(","), text.count(".")
    sign = ""
    if text.startswith(("+", "-")):  # not `text[:1] in "+-"`: that holds for "" too
        sign, text = text[0], text[1:]
    if commas and dots:
        dec, grp = ("," , ".") if text.rfind(",") > text.rfind(".") else (".", ",")
        int_part, _, frac = text.rpartition(dec)
        if frac == "" or not frac.isdigit() or not _grouped(int_part, grp):
            raise CellValueError(f"expected a number, got {raw!r}")
        return Decimal(sign + int_part.replace(grp, "") + "." + frac)
    sep = "," if commas else "." if dots else None
    if sep is None or (commas or dots) == 0:
        raise CellValueError(f"expected a number, got {raw!r}")
    count = commas or dots
    if count > 1:
        if not _grouped(text, sep):
            raise CellValueError(f"expected a number, got {raw!r}")
        return Decimal(sign + text.replace(sep, ""))
    int_part, _, frac = text.partition(sep)
    if not frac.isdigit() or (int_part and not int_part.isdigit()):
        raise CellValueError(f"expected a number, got {raw!r}")
    if len(frac) == 3 and int_part not in {"", "0"}:
        raise CellValueError(
            f"{raw!r} is ambiguous: it reads as {int_part}.{frac} with a decimal "
            f"{'comma' if sep == ',' else 'point'} or as {int_part}{frac} with a thousands "
            "separator; type the number without separators or store it as a number"
        )
    return Decimal(sign + (int_part or "0") + "." + frac)


def _grouped(text: str, sep: str) -> bool:
    groups = text.split(sep)
    return (
        1 <= len(groups[0]) <= 3
        and groups[0].isdigit()
        and all(len(g) == 3 and g.isdigit() for g in groups[1:])
    )


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def parse_decimal(value: object, notes: list[str]) -> Decimal | None:
    """A finite number; text numbers are accepted when their separators are unambiguous."""
    _reject_special(value)
    if is_blank(value):
        return None
    if isinstance(value, bool):
        raise CellValueError(f"expected a number, got {describe(value)}")
    if isinstance(value, _DATE_LIKE):
        raise CellValueError(f"expected a number, got {describe(value)}; the cell is formatted "
                             "as a date or time: format it as a number and type the value again")
    if isinstance(value, int):
        return in_range(Decimal(value), value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CellValueError(f"expected a finite number, got {value}")
        return in_range(Decimal(repr(value)), value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise CellValueError(f"expected a finite number, got {value}")
        return in_range(value, value)
    try:
        return _number_from_text(str(value), notes)
    except ArithmeticError as exc:  # InvalidOperation, Overflow: regexes should prevent both
        raise CellValueError(f"expected a number, got {describe(value)}") from exc


def parse_float(value: object, notes: list[str]) -> float | None:
    """parse_decimal, as a float (for quantities that only ever reach the solver)."""
    number = parse_decimal(value, notes)
    if number is None:
        return None
    out = float(number)
    if not math.isfinite(out):  # pragma: no cover - text numbers are bounded above
        raise CellValueError(f"expected a finite number, got {describe(value)}")
    return out


def parse_int(value: object, notes: list[str]) -> int | None:
    """A whole number."""
    number = parse_decimal(value, notes)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise CellValueError(f"expected a whole number, got {_plain(number)}")
    return int(number)
