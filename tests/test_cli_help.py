"""`allocator --help` and friends, line by line: defaults shown, flags as flags, exit codes,
`--version`, and the options that need explaining (issue 20, item 6)."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

import allocator
from allocator.cli import app
from tests.rounds import write

runner = CliRunner()


def _help(*args: str) -> list[str]:
    result = runner.invoke(app, [*args, "--help"], prog_name="allocator", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_top_level_help_lists_commands_and_every_exit_code():
    assert _help() == [
        "Usage: allocator [OPTIONS] COMMAND [ARGS]...",
        "",
        "  Funding allocation and grant optimization: round workbook in, optimal",
        "  allocation, finance report and auditable decision record out. `allocator",
        "  COMMAND --help` shows a command's options.",
        "",
        "Options:",
        "  --version   Show the version and exit.",
        "  -h, --help  Show this message and exit.",
        "",
        "Commands:",
        "  run         Validate, solve and report a round; write its decision record.",
        "  check       Validate a round workbook without solving it.",
        "  template    Write the blank round workbook.",
        "  verify      Re-run a decision record: VERIFIED or each difference.",
        "  diff        What changed between two decisions.",
        "  settle      Settle a decision's tranches on measured results.",
        "  next-round  Write the next round's workbook from a decision and results.",
        "  compare     Solve the round and each variant, side by side.",
        "  sweep       What-if over budget levels and sampled outcomes.",
        "  frontier    Trade-off between two goals: the best B at each level of A.",
        "  keys        Signing keys for decision records.",
        "",
        "  Exit codes:",
        "    0    done",
        "    1    invalid input: every problem listed, nothing written",
        "    2    usage error: a missing argument, a bad option or an unwritable path",
        "    3    infeasible round: no allocation keeps every rule (diagnosis printed)",
        "    4    the solver stopped without a solution (time limit): nothing written",
        "    5    the decision record is not verified (each difference printed)",
        "    6    rounding to whole units breaks a hard rule (report and record marked)",
        "    70   internal error: a bug in allocator, please report it with the workbook",
        "    130  interrupted (Ctrl-C): nothing written",
    ]


def test_run_help_shows_defaults_flags_and_exit_codes():
    assert _help("run") == [
        "Usage: allocator run [OPTIONS] {WORKBOOK}",
        "",
        "  Validate, solve and report a round; write its decision record.",
        "",
        "Arguments:",
        "  WORKBOOK <path>  The round workbook (.xlsx).  [required]",
        "",
        "Options:",
        "  --report PATH   The report workbook.  [default: reports/<round_id>.xlsx]",
        "  --records DIR   Folder of decision records.  [default: models]",
        "  -q, --quiet     Print nothing on success.",
        "  --summary PATH  Also write a board summary: a PDF of at most 4 pages, or one",
        "                  self-contained HTML file for a path ending in .html (needs",
        "                  allocator[summary]).",
        "  --sign-key KEY  Private key to sign the record with.  [default:",
        "                  $ALLOCATOR_SIGNING_KEY, else unsigned]",
        "  -h, --help      Show this message and exit.",
        "",
        "  Exit codes:",
        "    0    solved: report and decision record written",
        "    1    invalid input: every problem listed, nothing written",
        "    2    usage error: a missing argument, a bad option or an unwritable path",
        "    3    infeasible round: no allocation keeps every rule (diagnosis printed)",
        "    4    the solver stopped without a solution (time limit): nothing written",
        "    6    rounding to whole units breaks a hard rule (report and record marked)",
        "    70   internal error: a bug in allocator, please report it with the workbook",
        "    130  interrupted (Ctrl-C): nothing written",
    ]


def test_template_help_shows_force_as_a_flag():
    lines = _help("template")
    assert "  --force     Replace PATH if it exists." in lines
    assert "    1   PATH exists (give --force to replace it)" in lines


@pytest.mark.parametrize("command", ["run", "check", "template", "verify", "diff", "compare",
                                     "sweep"])
def test_every_command_lists_its_exit_codes(command):
    lines = _help(command)
    block = lines[lines.index("  Exit codes:") + 1:]
    codes = [int(line.split()[0]) for line in block]
    assert codes[:3] == [0, 1, 2] and 70 in codes
    assert not any("<bool>" in line for line in lines)


def test_sweep_help_explains_the_budget_range_with_an_example():
    text = " ".join(" ".join(_help("sweep")).split())  # the help text without its wrapping
    assert ("--budget-range FUND:PERIOD:START:STOP:STEPS Solve the round STEPS times, with the "
            "budget of fund FUND in period PERIOD set to STEPS evenly spaced amounts from START "
            "to STOP (both included); every other budget stays as in the workbook. Example: "
            "JIF:2027:0:200000:5 solves with JIF's 2027 budget at 0, 50000, 100000, 150000 and "
            "200000.") in text
    assert "--samples N Samples of the outcome draws (per budget level). [default: 20]" in text
    assert "--workers N Local worker processes; 1 solves in this process. [default: the usable " \
           "cores]" in text


def test_version():
    result = runner.invoke(app, ["--version"], prog_name="allocator")
    assert (result.exit_code, result.stdout) == (0, f"allocator {allocator.__version__}\n")


def test_unknown_option_is_a_usage_error():
    result = runner.invoke(app, ["run", "--bogus"], prog_name="allocator")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "Error: No such option: --bogus"


@pytest.mark.parametrize("command", [["compare"], ["sweep", "--outcome-spread", "0.1"]])
def test_scheduler_without_dask_says_how_to_install_it(command, tmp_path, monkeypatch):
    for name in ("dask", "dask.distributed", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    wb = write(tmp_path / "t1.xlsx")
    result = runner.invoke(app, [command[0], str(wb), *command[1:], "--scheduler",
                                 "tcp://127.0.0.1:8786", "--report", str(tmp_path / "r.xlsx")],
                           prog_name="allocator")
    assert result.exit_code == 2
    assert result.stderr == ("--scheduler needs Dask's distributed scheduler, which is not "
                             "installed; install it with: pip install 'allocator[dask]'\n")
    assert not (tmp_path / "r.xlsx").exists()
