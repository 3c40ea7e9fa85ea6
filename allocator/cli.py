"""The `allocator` command: a thin layer over `allocator.api`.

Exit codes (`EXIT_MEANINGS`, shown in every command's --help): 0 done, 1 invalid input, 2 usage
error, 3 infeasible round, 4 solver stopped without a solution, 5 decision record not verified,
6 rounding to whole units breaks a hard rule (the report and record are written, marked so),
70 internal error (a bug: please report it), 130 interrupted.
"""

from __future__ import annotations

import math
import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from allocator.errors import InfeasibleRoundError, InputError, Notice, SigningKeyError, SolverStoppedError
from allocator.paths import UnsafePathError

EXIT_INVALID, EXIT_USAGE, EXIT_INFEASIBLE, EXIT_STOPPED, EXIT_UNVERIFIED, EXIT_BUG = 1, 2, 3, 4, 5, 70
EXIT_ROUNDING = 6  # solved, but no rounding to whole units keeps every hard rule
EXIT_INTERRUPTED = 130
ROUNDING_BREAKS = "rounding breaks a hard"  # the engine's warnings that go with exit code 6

# What each exit code means, for every command's --help (a command may say more for its own 0).
EXIT_MEANINGS: dict[int, str] = {
    0: "done",
    EXIT_INVALID: "invalid input: every problem listed, nothing written",
    EXIT_USAGE: "usage error: a missing argument, a bad option or an unwritable path",
    EXIT_INFEASIBLE: "infeasible round: no allocation keeps every rule (diagnosis printed)",
    EXIT_STOPPED: "the solver stopped without a solution (time limit): nothing written",
    EXIT_UNVERIFIED: "the decision record is not verified (each difference printed)",
    EXIT_ROUNDING: "rounding to whole units breaks a hard rule (report and record marked)",
    EXIT_BUG: "internal error: a bug in allocator, please report it with the workbook",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C): nothing written",
}


def exit_codes(codes: dict[int, str | None]) -> str:
    """The 'Exit codes:' block of a --help text; None means the code's usual meaning."""
    width = max(len(str(c)) for c in codes) + 2
    lines = [f"  {code:<{width}}{text or EXIT_MEANINGS[code]}" for code, text in codes.items()]
    return "\b\nExit codes:\n" + "\n".join(lines)  # \b: click keeps the lines as they are


# Plain help (no rich markup): rich read `[default: ...]` in a help text as a style tag and
# dropped it, and showed flags as `--quiet <bool>`.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]},
                  help="Funding allocation and grant optimization: round workbook in, optimal "
                       "allocation, finance report and auditable decision record out. "
                       "`allocator COMMAND --help` shows a command's options.",
                  epilog=exit_codes(dict.fromkeys(EXIT_MEANINGS)))


def _version(value: bool) -> None:
    if value:
        from allocator import __version__

        typer.echo(f"allocator {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """Funding allocation and grant optimization."""


def _err(text: str) -> None:
    typer.echo(text, err=True)


def _guard(func):
    """Map the engine's errors to exit codes; never show a traceback to a user."""
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            _err(exc.render())
            _err("Nothing was written.")
            raise typer.Exit(EXIT_INVALID) from None
        except InfeasibleRoundError as exc:
            _err(str(exc))
            _err("The round is infeasible; no report or record was written.")
            raise typer.Exit(EXIT_INFEASIBLE) from None
        except SolverStoppedError as exc:
            _err(f"solver stopped: {exc}")
            _err("No report or record was written.")
            raise typer.Exit(EXIT_STOPPED) from None
        except typer.Exit:
            raise
        except SigningKeyError as exc:  # e.g. ALLOCATOR_SIGNING_KEY names no usable key
            _err(f"{exc}; nothing was written.")
            raise typer.Exit(2) from None
        except UnsafePathError as exc:  # input validation refuses these first; defence in depth
            _err(f"{exc}; nothing was written.")
            raise typer.Exit(EXIT_INVALID) from None
        except OSError as exc:  # a file where a folder must be, no permission, a full disk
            _err(f"{exc.strerror or exc}: {exc.filename}; nothing was written."
                 if exc.filename else f"{exc}; nothing was written.")
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            _err("interrupted; nothing was written.")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:  # a bug: say so plainly, without a traceback
            _err(f"internal error ({type(exc).__name__}: {exc}); nothing was written. "
                 "This is a bug in allocator: please report it with the workbook.")
            raise typer.Exit(EXIT_BUG) from None

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    wrapper.__wrapped__ = func
    return wrapper


def _money(value: float | Decimal, currency: str) -> str:
    return f"{currency} {Decimal(str(value)):,.0f}" if float(value).is_integer() else \
        f"{currency} {float(value):,.2f}"


# Arguments and options several commands share.
Workbook = Annotated[Path, typer.Argument(metavar="WORKBOOK", help="The round workbook (.xlsx).")]
Records = Annotated[Path | None, typer.Option(
    metavar="DIR", help="Folder of decision records.  [default: models]")]


SummaryPath = Annotated[Path | None, typer.Option(
    "--summary", metavar="PATH", help="Also write a board summary: a PDF of at most 4 pages, or one "
                      "self-contained HTML file for a path ending in .html (needs allocator[summary]).")]


@app.command(epilog=exit_codes({0: "solved: report and decision record written", EXIT_INVALID: None,
                                EXIT_USAGE: None, EXIT_INFEASIBLE: None, EXIT_STOPPED: None,
                                EXIT_ROUNDING: None, EXIT_BUG: None, EXIT_INTERRUPTED: None}))
@_guard
def run(
    workbook: Workbook,
    report: Annotated[Path | None, typer.Option(
        metavar="PATH", help="The report workbook.  [default: reports/<round_id>.xlsx]")] = None,
    records: Records = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
    summary: SummaryPath = None,
    sign_key: Annotated[Path | None, typer.Option(
        metavar="KEY", help="Private key to sign the record with.  "
                            "[default: $ALLOCATOR_SIGNING_KEY, else unsigned]")] = None,
) -> None:
    """Validate, solve and report a round; write its decision record."""
    from allocator import api
    from allocator.progress import rich_phases

    _check_summary_path(summary)
    if summary is not None:  # before the solve, as the report's place is
        api.check_file_place(summary, "the board summary", [workbook])
    try:
        with rich_phases(enabled=not quiet):
            result = api.run(workbook, report=report, records=records, sign_key=sign_key)
    except InfeasibleRoundError as exc:
        _write_diagnosis(exc, report)
        raise
    if summary is not None:
        _write_run_summary(result, summary)
    if not quiet:
        typer.echo(summary_text(result))
        if summary is not None:
            typer.echo(f"board summary: {summary}")
    from allocator.solve import Status

    if result.solution.status == Status.rounding_infeasible:
        for line in result.solution.warnings:
            if line.startswith(ROUNDING_BREAKS):
                _err(line)
        _err(f"Rounding to whole units breaks a hard rule or limit; the report ({result.report})"
             f" and the record ({result.record.folder}) are written and marked "
             "rounding_infeasible.")
        raise typer.Exit(EXIT_ROUNDING)


def _write_run_summary(result, summary: Path) -> None:
    """The board summary of a run whose report and record are already written: a failure
    here says so, rather than that nothing was written."""
    from allocator.summary import run_board, write_summary

    try:
        write_summary(run_board(result.solution), summary)
    except OSError as exc:
        _err(f"{exc.strerror or exc}: {exc.filename or summary}; the report ({result.report}) and "
             f"the record ({result.record.folder}) are written, the board summary is not.")
        raise typer.Exit(EXIT_USAGE) from None


def _check_summary_path(summary: Path | None) -> None:
    """Refuse an unusable --summary before any solve: its suffix, and matplotlib installed."""
    if summary is None:
        return
    if summary.suffix.lower() not in (".pdf", ".html", ".htm"):
        _err(f"--summary {summary}: the board summary is a .pdf or an .html file")
        raise typer.Exit(2)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from allocator.summary import INSTALL_HINT

        _err(f"--summary: {INSTALL_HINT}")
        raise typer.Exit(2) from None


def _write_diagnosis(exc: InfeasibleRoundError, report: Path | None) -> None:
    """Write `<report stem>.diagnosis.xlsx` beside the report path (never the report itself)."""
    diagnosis = exc.diagnosis
    if diagnosis is None:
        return
    from allocator.diagnose import write_diagnosis

    target = report if report is not None else Path("reports") / f"{diagnosis.round_id}.xlsx"
    path = target.with_name(f"{target.stem}.diagnosis.xlsx")
    write_diagnosis(diagnosis, path)
    _err(f"diagnosis written to {path}")


def summary_text(result) -> str:
    """The short summary `allocator run` prints."""
    from allocator.solve import Status

    sol = result.solution
    rnd = sol.round
    cur = rnd.settings.currency
    alloc = sol.allocation
    total = alloc["amount"].sum() if len(alloc) else 0.0
    budget = sum(b.amount for b in rnd.budgets)
    funded = alloc["program_id"].nunique() if len(alloc) else 0
    status = sol.status.value
    if sol.status in (Status.time_limit, Status.not_proven):
        gap = sol.stages[0].mip_gap
        status += " — not proven optimal"
        if gap is not None:
            status += f" (gap {gap:.2%})" if math.isfinite(gap) else " (no bound on the optimum)"
    before = "optimum" if sol.status == Status.optimal else "value"  # a stopped run has no optimum
    lines = [
        f"round {rnd.settings.round_id}: {status}",
        f"outcome value {sol.objective:,.4f} ({before} before rounding "
        f"{sol.optimal_objective:,.4f}{', guaranteed' if sol.robustness else ''})",
        f"allocated {_money(total, cur)} of {_money(budget, cur)} budget; "
        f"{funded} of {len(rnd.programs)} programs funded",
        "by fund:",
    ]
    if sol.fairness:
        fair = sol.fairness
        lines.insert(2, f"equity {fair['objective']}: price of fairness "
                        f"{fair['outcome_given_up']:,.4f} outcome value, "
                        f"{fair['trainees_given_up']:,.2f} trainee placements; lowest group "
                        f"{fair['min_before']:,.4g} -> {fair['min_after']:,.4g} {fair['unit']}")
    if sol.robustness:
        rob = sol.robustness
        price = rob["price_of_robustness"]
        lines.insert(2, f"robust (Gamma {rob['gamma']:g}, z {rob['level']:g}): guaranteed "
                        f"{rob['guaranteed']:,.4f}, expected {rob['expected']:,.4f}; price of "
                        f"robustness {'unknown' if price is None else f'{price:,.4f}'} "
                        "outcome value")
    by_fund = alloc.groupby("fund_id")["amount"].sum() if len(alloc) else {}
    for f in rnd.funds:
        lines.append(f"  {f.fund_id:<16} {_money(by_fund.get(f.fund_id, 0.0), cur):>22}")
    lines.append("by jurisdiction:")
    jur_of = {r.region_id: r.jurisdiction for r in rnd.regions}
    by_jur = alloc.assign(j=alloc["region_id"].map(jur_of)).groupby("j")["amount"].sum() \
        if len(alloc) else {}
    for j in rnd.jurisdictions():
        lines.append(f"  {j:<16} {_money(by_jur.get(j, 0.0), cur):>22}")
    from allocator.explain import unspent_note

    unspent = unspent_note(sol)
    if unspent:
        lines.append(f"warning: {unspent}")
    misses = len(sol.rounded.row_misses)
    if misses:
        lines.append(f"warning: rounding misses {misses} row(s) by up to one unit each; "
                     "see the Rules sheet")
    lines.extend(f"warning: {w}" for w in sol.warnings)
    # what Excel hides but the engine read (hidden sheets, rows, columns): what was used
    lines.extend(f"note: {n}" for n in result.loaded.notes if isinstance(n, Notice))
    t = result.timings
    order = [("read", "read"), ("build", "build"), ("handover", "hand-over"), ("solve", "solve"),
             ("rounding", "rounding"), ("record", "record"), ("report", "report")]
    lines.append("time: " + ", ".join(f"{label} {t[k]:.2f} s" for k, label in order if k in t))
    lines.append(f"report: {result.report}")
    lines.append(f"record: {result.record.folder}")
    return "\n".join(lines)


@app.command(epilog=exit_codes({0: "valid", EXIT_INVALID: None, EXIT_USAGE: None,
                                EXIT_INFEASIBLE: "certainly infeasible (found without solving)",
                                EXIT_BUG: None}))
@_guard
def check(workbook: Workbook) -> None:
    """Validate a round workbook without solving it."""
    from allocator.validate import load_round

    loaded = load_round(workbook)
    rnd = loaded.round
    typer.echo(f"{workbook}: valid round {rnd.settings.round_id} — {len(rnd.regions)} regions, "
               f"{len(rnd.funds)} funds, {len(rnd.programs)} programs, {len(rnd.rules)} rules, "
               f"{len(rnd.periods)} periods")
    for note in loaded.notes:
        typer.echo(f"{'note' if isinstance(note, Notice) else 'normalised'}: {note}")
    from allocator.diagnose import cheap_checks
    from allocator.eligibility import allocation_index, cap_block_lines, cap_blocks

    # Never fundable program-periods: a warning (the round still solves; exit code 0).
    for line in cap_block_lines(cap_blocks(rnd, allocation_index(rnd))):
        typer.echo(f"warning: {line}")
    problems = cheap_checks(rnd)
    if problems:
        raise InfeasibleRoundError("infeasible before any solve:\n" + "\n".join(
            f"  {p}" for p in problems))


@app.command(short_help="Write the blank round workbook.",
             epilog=exit_codes({0: "written", EXIT_INVALID: "PATH exists (give --force to replace it)",
                                EXIT_USAGE: None, EXIT_BUG: None}))
@_guard
def template(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Where to write the blank workbook.")],
    force: Annotated[bool, typer.Option("--force", help="Replace PATH if it exists.")] = False,
) -> None:
    """Write the blank round workbook (every sheet and header, instructions, drop-downs)."""
    from allocator.template import write_template

    if path.is_dir():
        _err(f"{path} is a folder; give the path of the workbook to write, e.g. {path / 'round.xlsx'}")
        raise typer.Exit(EXIT_INVALID)
    if path.exists() and not force:
        _err(f"{path} exists; nothing was written (give --force to replace it)")
        raise typer.Exit(EXIT_INVALID)
    write_template(path)
    typer.echo(f"wrote {path}")


PublicKeys = Annotated[list[Path] | None, typer.Option(
    "--public-key", metavar="KEY", help="A trusted public key (.pub) or a folder of them; "
                                        "repeatable. Signatures are checked only against keys "
                                        "given here.")]


@app.command(short_help="Re-run a decision record: VERIFIED or each difference.",
             epilog=exit_codes({0: "VERIFIED", EXIT_INVALID: "RECORD is not a decision record",
                                EXIT_USAGE: None, EXIT_UNVERIFIED: None, EXIT_BUG: None}))
@_guard
def verify(
    record: Annotated[Path, typer.Argument(
        metavar="RECORD", help="A decision or settlement record folder (with --chain: a round's "
                               "folder, or a records folder holding rounds).")],
    public_key: PublicKeys = None,
    chain: Annotated[bool, typer.Option("--chain", help="Walk the chain of records: name a removed, "
                                                        "inserted, reordered or rewritten record.")] = False,
    resolve: Annotated[bool, typer.Option("--resolve", help="With --chain: also re-solve every "
                                                            "decision record (slow).")] = False,
) -> None:
    """Re-run a decision record: VERIFIED, or every difference and violated rule."""
    from allocator.atomic import is_leftover
    from allocator.record import verify_record
    from allocator.signing import SigningKeyError, load_trusted

    if resolve and not chain:
        _err("--resolve applies to --chain; `verify RECORD` always re-solves")
        raise typer.Exit(2)
    try:
        trusted = load_trusted(public_key) if public_key else None
    except SigningKeyError as exc:
        _err(str(exc))
        raise typer.Exit(2) from None
    if chain:
        _verify_chain(record, trusted, resolve)
        return
    if is_leftover(record):
        _err(f"{record} is the leftover of an interrupted run, not a decision record")
        raise typer.Exit(EXIT_INVALID)
    result = verify_record(record, trusted_keys=trusted)
    for n in result.notes:
        typer.echo(f"note: {n}")
    for w in result.warnings:
        typer.echo(f"warning: {w}")
    if result.verified:
        typer.echo(f"VERIFIED {record}")
        return
    typer.echo(f"NOT VERIFIED {record}")
    for p in result.problems:
        typer.echo(f"  {p}")
    raise typer.Exit(EXIT_UNVERIFIED)


def _verify_chain(folder: Path, trusted, resolve: bool) -> None:
    """`verify --chain`: every round under `folder`, each record's files and its link."""
    from allocator.chain import chain_folders, walk_chain
    from allocator.record import Verification, check_files, verify_record

    rounds = chain_folders(folder)
    if not rounds:
        _err(f"{folder} holds no records: give a round's folder (<records>/<round_id>) or a "
             "records folder")
        raise typer.Exit(EXIT_INVALID)

    def check(rec: Path) -> tuple[list[str], list[str], list[str]]:
        out: Verification = verify_record(rec, trusted_keys=trusted) if resolve else \
            check_files(rec, trusted_keys=trusted)
        return out.problems, out.warnings, out.notes

    broken = False
    for round_dir in rounds:
        report = walk_chain(round_dir, check)
        for line in report.lines:
            typer.echo(line)
        for w in report.warnings:
            typer.echo(f"warning: {w}")
        if report.verified:
            typer.echo(f"CHAIN VERIFIED {round_dir}")
            continue
        broken = True
        typer.echo(f"CHAIN NOT VERIFIED {round_dir}")
        for p in report.problems:
            typer.echo(f"  {p}")
    if broken:
        raise typer.Exit(EXIT_UNVERIFIED)


keys_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       context_settings={"help_option_names": ["-h", "--help"]},
                       help="Signing keys for decision records.")
app.add_typer(keys_app, name="keys")


@keys_app.command("init", epilog=exit_codes({0: "key pair written", EXIT_USAGE: "usage error, or "
                                            "the key files exist already", EXIT_BUG: None}))
@_guard
def keys_init(
    name: Annotated[str, typer.Option(metavar="NAME",
                                      help="Who signs, e.g. the fund: \"Upper Rhine JIF\".")],
    out: Annotated[Path, typer.Option(metavar="DIR",
                                      help="Folder for the key pair (keep the .key file private).")],
) -> None:
    """Make an ed25519 key pair: <name>.key (private, mode 0600) and <name>.pub (give to auditors)."""
    from allocator.signing import SigningKeyError, fingerprint, init_keys, load_private

    try:
        private, public = init_keys(name, out)
    except SigningKeyError as exc:
        _err(str(exc))
        raise typer.Exit(2) from None
    key = load_private(private)
    typer.echo(f"private key: {private} (keep it secret; sign runs with --sign-key {private} or "
               f"ALLOCATOR_SIGNING_KEY={private})")
    typer.echo(f"public key:  {public} (give it to auditors: verify --public-key {public})")
    typer.echo(f"fingerprint: {fingerprint(key.private.public_key())}")


@app.command(short_help="What changed between two decisions.",
             epilog=exit_codes({0: None, EXIT_INVALID: "a folder is not a decision record",
                                EXIT_USAGE: None, EXIT_BUG: None}))
@_guard
def diff(
    record_a: Annotated[Path, typer.Argument(metavar="RECORD_A",
                                             help="The earlier decision record folder.")],
    record_b: Annotated[Path, typer.Argument(metavar="RECORD_B",
                                             help="The later decision record folder.")],
) -> None:
    """What changed between two decisions: inputs, then money by program, region and fund."""
    from allocator.atomic import is_leftover
    from allocator.record import diff_records

    for folder in (record_a, record_b):
        complete = (folder / "round.json").is_file() and (folder / "allocation.csv").is_file()
        if is_leftover(folder) or not complete:
            _err(f"{folder} is not a decision record (no round.json / allocation.csv)")
            raise typer.Exit(EXIT_INVALID)
    for line in diff_records(record_a, record_b):
        typer.echo(line)



@app.command(short_help="Settle a decision's tranches on measured results.",
             epilog=exit_codes({0: "settled", EXIT_INVALID: "invalid results, or RECORD is not a "
                                "decision record", EXIT_USAGE: None, EXIT_BUG: None}))
@_guard
def settle(
    record: Annotated[Path, typer.Argument(metavar="RECORD", help="The decision record folder to settle.")],
    results: Annotated[Path, typer.Argument(metavar="RESULTS",
                                             help="The results workbook (.xlsx).")],
    report: Annotated[Path | None, typer.Option(
        metavar="PATH",
        help="Settlement workbook.  [default: reports/<round_id>.settlement-<settlement_id>.xlsx]")
    ] = None,
    sign_key: Annotated[Path | None, typer.Option(
        metavar="KEY", help="Private key to sign the settlement record with.  "
                            "[default: $ALLOCATOR_SIGNING_KEY, else unsigned]")] = None,
) -> None:
    """Settle a decision's tranches on measured results: payable, withheld, returned, carried."""
    from allocator import api
    from allocator.settle import RecordError, fund_totals

    if report is not None:  # never over the results it reads
        api.check_file_place(report, "the settlement report", [results])
    try:
        run_ = api.settle(record, results, report=report, sign_key=sign_key)
    except RecordError as exc:
        _err(str(exc))
        _err("Nothing was written.")
        raise typer.Exit(EXIT_INVALID) from None
    s = run_.settlement
    cur = s.round.settings.currency
    lines = sum(ln.scheduled for ln in s.lines), sum(ln.payable for ln in s.lines)
    typer.echo(f"round {s.round.settings.round_id}: settled {len(s.lines)} tranches of record "
               f"{s.decision.run_id}")
    typer.echo(f"scheduled {_money(s.money(lines[0]), cur)}, payable {_money(s.money(lines[1]), cur)}, "
               f"withheld {_money(s.money(lines[0] - lines[1]), cur)}")
    typer.echo("by fund (paid / withheld: returned, carried):")
    for ft in fund_totals(s):
        carried = f" into {ft['carried_into']}" if ft["carried"] else ""
        typer.echo(f"  {ft['fund_id']:<16} {_money(s.money(ft['paid']), cur):>18} / "
                   f"{_money(s.money(ft['withheld']), cur)}: returned "
                   f"{_money(s.money(ft['returned']), cur)}, carried "
                   f"{_money(s.money(ft['carried']), cur)}{carried}")
    typer.echo(f"report: {run_.report}")
    typer.echo(f"record: {run_.record.folder}")


@app.command("next-round", short_help="Write the next round's workbook from a decision and results.",
             epilog=exit_codes({0: "written", EXIT_INVALID: "invalid results, or RECORD is not a "
                                "decision record", EXIT_USAGE: None, EXIT_BUG: None}))
@_guard
def next_round(
    record: Annotated[Path, typer.Argument(
        metavar="RECORD", help="The decision record folder of the earlier round.")],
    out: Annotated[Path, typer.Option(metavar="NEW", help="The next round's workbook to write (.xlsx).")],
    results: Annotated[list[Path] | None, typer.Option(
        metavar="RESULTS", help="A results workbook of the earlier round (repeat for several).")] = None,
) -> None:
    """Write the next round's workbook: results in, outcomes updated, money carried, changes listed."""
    from allocator import api
    from allocator.settle import RecordError

    try:
        nxt = api.next_round(record, results or [], out=out)
    except RecordError as exc:
        _err(str(exc))
        _err("Nothing was written.")
        raise typer.Exit(EXIT_INVALID) from None
    typer.echo(f"next round {nxt.round_id}: periods {', '.join(nxt.periods)}; "
               f"{len(nxt.changes)} changes listed on its Changes sheet")
    typer.echo(f"wrote {nxt.path}")


# Options shared by the commands that run independent solves in parallel.
Workers = Annotated[int | None, typer.Option(
    metavar="N", help="Local worker processes; 1 solves in this process.  [default: the usable "
    "cores]")]
Scheduler = Annotated[str | None, typer.Option(
    metavar="ADDRESS", help="Dask scheduler address (e.g. tcp://host:8786): solve on that cluster "
    "(needs pip install 'allocator[dask]').")]
QuietParallel = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, no summary.")]


@app.command(short_help="Solve the round and each variant, side by side.",
             epilog=exit_codes({0: "compared (a variant without a solution is marked in the workbook)",
                                EXIT_INVALID: "invalid input, or no Variants rows: nothing written",
                                EXIT_USAGE: None, EXIT_BUG: None, EXIT_INTERRUPTED: None}))
@_guard
def compare(
    workbook: Annotated[Path, typer.Argument(metavar="WORKBOOK",
                                             help="The round workbook (.xlsx) with a Variants sheet.")],
    report: Annotated[Path | None, typer.Option(
        metavar="PATH", help="The comparison workbook.  [default: reports/<round_id>.compare.xlsx]")] = None,
    records: Records = None,
    no_records: Annotated[bool, typer.Option("--no-records", help="Write no decision records.")] = False,
    cold: Annotated[bool, typer.Option(
        "--cold", help="Solve every variant from scratch, not from the base's model and the "
                       "variant before it (slower; the same answers).")] = False,
    workers: Workers = None,
    scheduler: Scheduler = None,
    quiet: QuietParallel = False,
    summary: SummaryPath = None,
) -> None:
    """Solve the round and every variant of its Variants sheet; write them side by side.

    Each row of the Variants sheet names a variant and its overrides, such as
    `budget JIF 2027 = +10%; rule R-RUR value = 0.3` (the template's Instructions sheet lists
    them all).
    """
    from allocator.compare import compare as run_compare

    if workers is not None and workers < 1:
        _err("--workers must be at least 1")
        raise typer.Exit(EXIT_USAGE)
    _require_dask(scheduler)
    _check_summary_path(summary)
    from allocator.api import check_file_place

    for path, what in ((summary, "the board summary"), (report, "the comparison workbook")):
        if path is not None:  # before the variants are solved
            check_file_place(path, what, [workbook])
    result = run_compare(workbook, report=report, records=None if no_records else (records or Path("models")),
                         workers=workers, scheduler=scheduler, progress=not quiet,
                         warm=not cold)
    if summary is not None:
        from allocator.summary import compare_board, write_summary

        write_summary(compare_board(result.runs, result.tables), summary)
        if not quiet:
            typer.echo(f"board summary: {summary}")
    if quiet:
        return
    summary = result.tables["Summary"]
    for row in summary.itertuples(index=False):
        if row.status in ("optimal", "time_limit"):
            change = f"{row.change_from_base:+,.4f}" if _number(row.change_from_base) else "n/a"
            typer.echo(f"  {row.variant:<24} {row.status:<10} outcome value {row.outcome_value:,.4f} "
                       f"({change} from base)")
        else:
            first = (str(row.message or "").splitlines() or [""])[0]
            typer.echo(f"  {row.variant:<24} {row.status:<10} {first}")
    failed = [r.name for r in result.runs if not r.solved]
    if failed:
        _err(f"warning: {len(failed)} variant(s) have no solution: {', '.join(failed)}; "
             "see the Summary sheet")
    typer.echo(f"ran on: {result.where}")
    typer.echo(f"comparison: {result.report}")


@app.command(short_help="What-if over budget levels and sampled outcomes.",
             epilog=exit_codes({0: "solved: sweep workbook written", EXIT_INVALID: None,
                                EXIT_USAGE: None, EXIT_BUG: None, EXIT_INTERRUPTED: None}))
@_guard
def sweep(
    workbook: Workbook,
    budget_range: Annotated[str | None, typer.Option(
        metavar="FUND:PERIOD:START:STOP:STEPS",
        help="Solve the round STEPS times, with the budget of fund FUND in period PERIOD set to "
             "STEPS evenly spaced amounts from START to STOP (both included); every other "
             "budget stays as in the workbook. Example: JIF:2027:0:200000:5 solves with JIF's "
             "2027 budget at 0, 50000, 100000, 150000 and 200000.")] = None,
    outcome_spread: Annotated[float | None, typer.Option(
        metavar="SHARE",
        help="Draw each program's outcomes from +-this share of their values, e.g. 0.1.")] = None,
    samples: Annotated[int, typer.Option(
        metavar="N", help="Samples of the outcome draws (per budget level).")] = 20,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the outcome draws.")] = 0,
    report: Annotated[Path | None, typer.Option(
        metavar="PATH", help="The sweep workbook.  [default: reports/<round_id>.sweep.xlsx]")] = None,
    cold: Annotated[bool, typer.Option(
        "--cold", help="Solve every point from scratch, not from the point before it (slower; "
                       "the same points).")] = False,
    workers: Workers = None,
    scheduler: Scheduler = None,
    quiet: QuietParallel = False,
) -> None:
    """What-if at scale: solve over budget levels and/or sampled outcomes; report robustness.

    Give --budget-range, --outcome-spread or both (then every budget level is solved with
    --samples outcome draws).
    """
    from allocator.sweep import (
        SweepSpecError,
        default_sweep_path,
        parse_budget_range,
        run_sweep,
        write_sweep,
    )
    from allocator.validate import load_round

    if budget_range is None and outcome_spread is None:
        _err("give --budget-range FUND:PERIOD:START:STOP:STEPS and/or --outcome-spread SHARE")
        raise typer.Exit(EXIT_USAGE)
    if workers is not None and workers < 1:
        _err("--workers must be at least 1")
        raise typer.Exit(EXIT_USAGE)
    _require_dask(scheduler)
    rnd = load_round(workbook).round
    try:
        br = parse_budget_range(budget_range, rnd) if budget_range is not None else None
        result = run_sweep(rnd, budget_range=br, spread=outcome_spread, samples=samples, seed=seed,
                           workers=workers, scheduler=scheduler, progress=not quiet,
                           warm=not cold)
    except SweepSpecError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    path = write_sweep(result, report if report is not None else default_sweep_path(rnd))
    if quiet:
        return
    from allocator.sweep import sweep_tables

    for row in sweep_tables(result)["Levels"].itertuples(index=False):
        budget = f"budget {row.budget:,.0f}: " if _number(row.budget) else ""
        value = f"{row.outcome_value:,.4f}" if _number(row.outcome_value) else "-"
        typer.echo(f"  {budget}outcome value {value} ({row.solved} of {row.solves} solved)")
    typer.echo(f"{len(result.points)} solves in {result.seconds:.1f} s on {result.where}")
    typer.echo(f"sweep: {path}")

def _require_dask(scheduler: str | None) -> None:
    """Stop with how to install Dask when --scheduler is given and it is missing."""
    from allocator.pool import DaskMissingError, require_dask

    if scheduler:
        try:
            require_dask()
        except DaskMissingError as exc:
            _err(str(exc))
            raise typer.Exit(EXIT_USAGE) from None


@app.command(short_help="Trade-off between two goals: the best B at each level of A.",
             epilog=exit_codes({0: "frontier written", EXIT_INVALID: None,
                                EXIT_USAGE: "usage error, or a metric the round does not have",
                                EXIT_BUG: None, EXIT_INTERRUPTED: None}))
@_guard
def frontier(
    workbook: Workbook,
    between: Annotated[tuple[str, str], typer.Option(
        metavar="A B", help="Two metrics: outcome columns of Programs, 'outcome' (the round's "
                            "objective) or 'equity'. B is maximised at each level of A.")],
    points: Annotated[int, typer.Option(metavar="N", help="Points on the frontier (levels of A).")] = 11,
    report: Annotated[Path | None, typer.Option(
        metavar="PATH", help="Frontier workbook.  "
                             "[default: reports/<round_id>.frontier.<A>-<B>.xlsx]")] = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
    quiet: QuietParallel = False,
) -> None:
    """Trade-off between two goals: the best B for each level of A (epsilon-constraint)."""
    from allocator.frontier import (
        FrontierSpecError,
        default_frontier_path,
        frontier_tables,
        trace_frontier,
        write_frontier,
    )
    from allocator.validate import load_round

    if workers is not None and workers < 1:
        _err("--workers must be at least 1")
        raise typer.Exit(EXIT_USAGE)
    _require_dask(scheduler)
    rnd = load_round(workbook).round
    a, b = between
    try:
        result = trace_frontier(rnd, a, b, points=points, workers=workers, scheduler=scheduler,
                                progress=not quiet)
    except FrontierSpecError as exc:
        _err(str(exc))
        raise typer.Exit(2) from None
    path = write_frontier(result, report if report is not None else default_frontier_path(rnd, a, b))
    if quiet:
        return
    for row in frontier_tables(result)["Frontier"].itertuples(index=False):
        typer.echo(f"  point {row[0]:>3}: {a} {row[1]:,.4f}  {b} {row[2]:,.4f}  "
                   f"objective {row[3]:,.4f}")
    typer.echo(f"{len(result.points)} points in {result.seconds:.1f} s on {result.where}")
    typer.echo(f"frontier: {path}")


def _number(value: object) -> bool:
    """A real number (not None, not NaN) in a summary table."""
    import math

    return isinstance(value, int | float | Decimal) and not (isinstance(value, float) and math.isnan(value))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
