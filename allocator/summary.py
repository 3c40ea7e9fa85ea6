"""The board summary: one file a board reads in five minutes (`--summary PATH`).

A PDF (at most 4 A4 pages, made with matplotlib's PdfPages) or, for a path ending in `.html`,
one self-contained HTML file (charts embedded as PNG). It holds the dashboard's figures and
charts, the rules and budgets that bind in words (with what a change would buy or cost), and
the programs not funded and why (the reasons of allocator.explain, as in the Programs sheet).

matplotlib is an optional dependency: `pip install 'allocator[summary]'`.
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from allocator.atomic import atomic_path

if TYPE_CHECKING:
    from allocator.compare import VariantRun
    from allocator.engine import Solution

MAX_PAGES = 4
A4 = (8.27, 11.69)
MAX_LIST = 18  # rows of a list (binding limits, programs not funded) before "and n more"
INSTALL_HINT = ("the board summary needs matplotlib: install it with "
                "pip install 'allocator[summary]'")


class SummaryUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # the optional extra is not installed
        raise SummaryUnavailable(INSTALL_HINT) from exc
    return plt


@dataclass
class Chart:
    """A bar chart: categories, named series (values), axis label, whether values are shares."""

    title: str
    categories: list[str]
    series: dict[str, list[float]]
    unit: str = ""
    share: bool = False
    horizontal: bool = False
    stacked: bool = False


@dataclass
class Board:
    """Everything the summary shows, in words and numbers (no solver terms)."""

    title: str
    figures: list[tuple[str, str]]
    charts: list[Chart]
    sections: list[tuple[str, list[str]]] = field(default_factory=list)


# --- what a run shows ---------------------------------------------------------------------------


def run_board(solution: Solution) -> Board:
    """The board summary of one solved round."""
    from allocator import report
    from allocator.explain import price_table, program_reasons

    rnd = solution.round
    cur = rnd.settings.currency
    ledger = report._Ledger(rnd, solution.allocation)
    dash = list(report._dashboard(solution, ledger).iter_rows())
    figures = [(name, _shown(value, name, cur)) for name, value, target in dash if target is None]
    shares = [(name, value, target) for name, value, target in dash if target is not None]
    juris = report._jurisdictions(rnd, ledger)
    regions = report._regions(rnd, ledger)
    charts = [_juste_retour(juris, bool(rnd.contributions))]
    if shares:
        charts.append(Chart("Inclusion shares against their targets", [s[0] for s in shares],
                            {"achieved": [s[1] or 0.0 for s in shares],
                             "rule target": [s[2] or 0.0 for s in shares]},
                            share=True, horizontal=True))
    charts.append(Chart("Money per inhabitant by region", [r[1] for r in regions.iter_rows()],
                        {f"{cur} per inhabitant": [r[7] or 0.0 for r in regions.iter_rows()]},
                        unit=cur, horizontal=True))
    charts.append(_by_fund_and_period(solution, ledger))
    prices = price_table(solution)
    # The limits that bind and have a price: what a board could change to gain outcome value.
    binding = [s for s, b, v in zip(prices["sentence"], prices["binding"], prices["per_step"],
                                    strict=True) if b and abs(v or 0.0) >= 5e-4] \
        if len(prices) else []
    reasons = program_reasons(solution)
    names = {p.program_id: p.name for p in rnd.programs}
    unfunded = [f"{names.get(r.program_id) or r.program_id} ({r.program_id}), {r.status}: "
                f"{r.reason}" for r in reasons.itertuples(index=False)
                if r.status not in ("fully funded", "funded partly")]
    sections = [
        ("What limits the outcome (binding budgets and rules)",
         _capped(binding, "binding limits", "Prices sheet") or
         ["Nothing binds: every budget and rule has room to spare."]),
        ("Programs not funded, and why", _capped(unfunded, "programs", "Programs sheet") or
         ["Every program got money."]),
    ]
    title = f"{rnd.settings.title or rnd.settings.round_id}: board summary"
    return Board(title, figures, charts, sections)


def _shown(value: Any, name: str, cur: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if name in ("budget", "allocated", "unspent"):
        return f"{cur} {value:,.0f}"
    if name.startswith("share"):
        return f"{value:.1%}"
    if name == "trainees":
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}"


def _capped(lines: list[str], what: str, where: str) -> list[str]:
    if len(lines) <= MAX_LIST:
        return lines
    return [*lines[:MAX_LIST], f"... and {len(lines) - MAX_LIST} more {what} (see the {where})."]


def _juste_retour(juris: Any, contributions: bool) -> Chart:
    rows = list(juris.iter_rows())
    names = [r[0] for r in rows]
    if contributions:
        return Chart("Joint money and contributions by jurisdiction", names,
                     {"share of the joint money received": [r[6] or 0.0 for r in rows],
                      "share of the contributions paid": [r[8] or 0.0 for r in rows]}, share=True)
    return Chart("Money by jurisdiction", names, {"share of all money": [r[4] or 0.0 for r in rows]},
                 share=True)


def _by_fund_and_period(solution: Solution, ledger: Any) -> Chart:
    rnd = solution.round
    spent = ledger.sums(["fund_id", "period"])
    series = {f.fund_id: [float(ledger.decimal(spent.get((f.fund_id, t), 0))) for t in rnd.periods]
              for f in rnd.funds}
    return Chart("Money allocated by fund and period", list(rnd.periods), series,
                 unit=rnd.settings.currency, stacked=True)


def compare_board(runs: Sequence[VariantRun], tables: dict[str, Any]) -> Board:
    """The board summary of a comparison: each variant's figures and money side by side."""
    base = runs[0].round
    cur = base.settings.currency
    summary = tables["Summary"]
    figures = []
    lines = []
    for row in summary.to_dict("records"):
        if row["outcome_value"] is None or row["status"] not in ("optimal", "time_limit"):
            lines.append(f"{row['variant']}: {row['status']} - {str(row['message']).splitlines()[0]}")
            continue
        change = row["change_from_base_pct"]
        lines.append(f"{row['variant']}: outcome value {row['outcome_value']:,.2f}"
                     + (f" ({change:+.1%} from the base)" if change is not None and
                        row["variant"] != runs[0].name else "")
                     + f"; allocated {cur} {float(row['allocated']):,.0f} of "
                       f"{cur} {float(row['budget']):,.0f}; {row['programs_funded']} programs funded"
                     + (f"; changes: {row['overrides']}" if row["overrides"] else ""))
    figures.append(("variants", str(len(runs))))
    names = [r.name for r in runs]
    solved = [n for n, r in zip(names, runs, strict=True) if r.solved]
    charts = []
    for sheet, key in (("Jurisdictions", "jurisdiction"), ("Funds", "fund_id")):
        df = tables[sheet]
        charts.append(Chart(f"Money by {key.split('_')[0]}, per variant", [str(k) for k in df[key]],
                            {n: [float(v or 0) for v in df[n]] for n in solved}, unit=cur))
    values = {n: float(v) for n, v in zip(summary["variant"], summary["outcome_value"], strict=True)
              if v is not None and n in solved}
    charts.insert(0, Chart("Outcome value per variant", list(values), {"outcome value":
                                                                       list(values.values())}))
    return Board(f"{base.settings.title or base.settings.round_id}: variants compared", figures,
                 charts, [("The variants", lines)])


# --- writing ------------------------------------------------------------------------------------


def write_summary(board: Board, path: str | Path) -> Path:
    """Write the board summary as PDF (at most MAX_PAGES pages) or, for `.html`, as HTML."""
    plt = _pyplot()
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".html", ".htm"):
            Path(tmp).write_text(_html(board, plt), encoding="utf-8")
        else:
            _pdf(board, plt, Path(tmp))
    return path


def _draw(ax: Any, chart: Chart) -> None:
    import numpy as np

    n = len(chart.categories)
    k = max(1, len(chart.series))
    pos = np.arange(n)
    width = 0.8 if chart.stacked else 0.8 / k
    bottom = np.zeros(n)
    for i, (name, values) in enumerate(chart.series.items()):
        vals = np.asarray(values, dtype=float) * (100.0 if chart.share else 1.0)
        offset = 0 if chart.stacked else (i - (k - 1) / 2) * width
        if chart.horizontal:
            ax.barh(pos + offset, vals, height=width, label=name,
                    left=bottom if chart.stacked else None)
        else:
            ax.bar(pos + offset, vals, width=width, label=name,
                   bottom=bottom if chart.stacked else None)
        if chart.stacked:
            bottom = bottom + vals
    labels = [textwrap.shorten(c, 28, placeholder="...") for c in chart.categories]
    fmt = "{x:,.0f}%" if chart.share else "{x:,.0f}"
    if chart.horizontal:
        ax.set_yticks(pos, labels, fontsize=7)
        ax.xaxis.set_major_formatter(fmt)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(chart.unit or ("share" if chart.share else ""), fontsize=7)
    else:
        ax.set_xticks(pos, labels, fontsize=7, rotation=30 if n > 4 else 0,
                      ha="right" if n > 4 else "center")
        ax.yaxis.set_major_formatter(fmt)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylabel(chart.unit or ("share" if chart.share else ""), fontsize=7)
    ax.set_title(chart.title, fontsize=10, fontweight="bold")
    ax.spines[["top", "right"]].set_visible(False)
    if len(chart.series) > 1:
        ax.legend(fontsize=7, frameon=False)


def _text_lines(board: Board, width: int = 100) -> list[tuple[str, str]]:
    """(style, text) lines of the sections: headings and wrapped bullet points."""
    out: list[tuple[str, str]] = []
    for heading, items in board.sections:
        out.append(("h", heading))
        for item in items:
            wrapped = textwrap.wrap(item, width) or [""]
            out.append(("b", "- " + wrapped[0]))
            out.extend(("b", "  " + w) for w in wrapped[1:])
        out.append(("b", ""))
    return out


def _pdf(board: Board, plt: Any, path: Path) -> None:
    from matplotlib.backends.backend_pdf import PdfPages

    with PdfPages(path) as pdf:
        # Page 1: title, figures and the first two charts; page 2: the other charts.
        fig = plt.figure(figsize=A4)
        title = textwrap.wrap(board.title, 60)
        for n, line in enumerate(title[:2]):
            fig.text(0.07, 0.955 - n * 0.026, line, fontsize=15, fontweight="bold")
        y = 0.92 - 0.026 * (min(2, len(title)) - 1)
        for name, value in board.figures:
            fig.text(0.09, y, name, fontsize=10)
            fig.text(0.62, y, value, fontsize=10, ha="right", fontweight="bold")
            y -= 0.022
        charts = board.charts
        slots = [(0.1, max(0.38, y - 0.26) - 0.02, 0.8, 0.22), (0.1, 0.06, 0.8, 0.22)]
        for chart, box in zip(charts[:2], slots, strict=False):
            _draw(fig.add_axes(_room_for_labels(box, chart)), chart)
        pdf.savefig(fig)
        plt.close(fig)
        pages = 1
        rest = charts[2:]
        if rest:
            fig = plt.figure(figsize=A4)
            for chart, box in zip(rest[:2], [(0.1, 0.55, 0.82, 0.38), (0.1, 0.08, 0.82, 0.38)],
                                  strict=False):
                _draw(fig.add_axes(_room_for_labels(box, chart)), chart)
            pdf.savefig(fig)
            plt.close(fig)
            pages += 1
        lines = _text_lines(board)
        per_page = 58
        while lines and pages < MAX_PAGES:
            fig = plt.figure(figsize=A4)
            y = 0.95
            chunk, lines = lines[:per_page], lines[per_page:]
            if lines and pages == MAX_PAGES - 1:  # the last page says what is left out
                chunk[-1] = ("b", "... (the rest is in the workbook)")
            for style, text in chunk:
                fig.text(0.07, y, text, fontsize=11 if style == "h" else 8.5,
                         fontweight="bold" if style == "h" else "normal", family="sans-serif")
                y -= 0.022 if style == "h" else 0.0155
            pdf.savefig(fig)
            plt.close(fig)
            pages += 1


def _room_for_labels(box: tuple[float, float, float, float],
                     chart: Chart) -> tuple[float, float, float, float]:
    """A horizontal chart's box moved right, so its category names show whole."""
    if not chart.horizontal:
        return box
    x, y, w, h = box
    return (x + 0.2, y, w - 0.2, h)


def _png(chart: Chart, plt: Any) -> str:
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    _draw(ax, chart)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _html(board: Board, plt: Any) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(n)}</td><td class='v'>{e(v)}</td></tr>" for n, v in board.figures)
    charts = "".join(f"<img alt='{e(c.title)}' src='data:image/png;base64,{_png(c, plt)}'>"
                     for c in board.charts)
    sections = "".join(f"<h2>{e(h)}</h2><ul>" + "".join(f"<li>{e(i)}</li>" for i in items)
                       + "</ul>" for h, items in board.sections)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(board.title)}</title><style>"
        "body{font-family:sans-serif;max-width:52em;margin:2em auto;color:#222}"
        "td{padding:.15em 1em .15em 0}.v{text-align:right;font-weight:bold}"
        "img{display:block;max-width:100%;margin:1em 0}li{margin:.2em 0}"
        "@page{size:A4;margin:15mm}"
        "</style></head><body>"
        f"<h1>{e(board.title)}</h1><table>{rows}</table>{charts}{sections}</body></html>")


__all__ = ["INSTALL_HINT", "Board", "SummaryUnavailable", "compare_board", "run_board",
           "write_summary"]
