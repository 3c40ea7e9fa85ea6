"""A run that dies while writing leaves the previous report intact and no partial output.

`allocator run` is started in a real process and SIGKILLed at chosen points (half-way through
saving the report, just before and just after each atomic rename), and once at an arbitrary
moment; the writer is also made to raise in-process. After each: the previous report has its
old bytes (or, if the run got through, the new report is complete and its record exists), and
nothing visible is half-written. Temporary files a SIGKILL leaves behind are hidden (.name.*.tmp)
and never take the place of a real file.
"""

from __future__ import annotations

import gc
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import openpyxl
import pytest
from typer.testing import CliRunner

from allocator.cli import app
from tests.hostile.corpus import base

# Runs the CLI with a kill switch: MODE is save_half (the report's temporary file is half-written),
# before_replace or after_replace (around the Nth rename done by allocator.atomic).
WRAPPER = r"""
import os, signal, sys
import allocator.atomic as atomic
mode, nth = sys.argv[1], int(sys.argv[2])

def die():
    os.kill(os.getpid(), signal.SIGKILL)

class OsProxy:
    calls = 0
    def __getattr__(self, name):
        return getattr(os, name)
    def replace(self, src, dst):
        OsProxy.calls += 1
        if mode == "before_replace" and OsProxy.calls == nth:
            die()
        os.replace(src, dst)
        if mode == "after_replace" and OsProxy.calls == nth:
            die()

atomic.os = OsProxy()
if mode == "save_half":
    from openpyxl.workbook.workbook import Workbook
    real_save = Workbook.save
    def save(self, filename):
        real_save(self, filename)
        size = os.path.getsize(filename)
        with open(filename, "r+b") as fh:
            fh.truncate(size // 2)
        die()
    Workbook.save = save
from allocator.cli import app
sys.argv = ["allocator", *sys.argv[3:]]
app()
"""


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """A round and the report and records of an earlier, successful run of it."""
    folder = tmp_path_factory.mktemp("previous")
    workbook = folder / "round.xlsx"
    base()(workbook)
    report, records = folder / "reports" / "T1.xlsx", folder / "models"
    result = CliRunner().invoke(app, ["run", str(workbook), "--report", str(report),
                                      "--records", str(records), "--quiet"])
    assert result.exit_code == 0, result.output
    return workbook, folder, report.read_bytes()


def _workspace(previous: tuple[Path, Path, bytes], tmp_path: Path) -> tuple[Path, Path, Path]:
    workbook, folder, _ = previous
    shutil.copytree(folder / "reports", tmp_path / "reports")
    shutil.copytree(folder / "models", tmp_path / "models")
    return workbook, tmp_path / "reports" / "T1.xlsx", tmp_path / "models"


def _records(records: Path) -> set[str]:
    return {p.name for p in (records / "T1").iterdir() if not p.name.startswith(".")}


def _visible(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*")
            if not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def _assert_consistent(report: Path, records: Path, old_bytes: bytes, old_records: set[str]) -> str:
    """Either nothing changed, or the whole run landed: a complete report and its record."""
    new_records = _records(records) - old_records
    hidden = [p.name for p in report.parent.iterdir() if p.name.startswith(".")]
    assert all(name.endswith(".tmp") for name in hidden), hidden
    for path in _visible(report.parent) + _visible(records):
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as zf:  # a visible workbook is never a partial one
                assert zf.testzip() is None
    if report.read_bytes() == old_bytes:
        # The record is renamed first, then the report: killed in between, the run's record
        # stands without its report (the record can be re-run; a report never lacks its record).
        assert len(new_records) <= 1, f"more than one new record: {new_records}"
        return "record_only" if new_records else "previous"
    assert len(new_records) == 1, "a new report must come with its decision record"
    audit = openpyxl.load_workbook(report, read_only=True)
    assert "Allocations" in audit.sheetnames
    return "new"


def _kill_run(workbook: Path, report: Path, records: Path, mode: str, nth: int) -> int:
    proc = subprocess.run([sys.executable, "-c", WRAPPER, mode, str(nth), "run", str(workbook),
                           "--report", str(report), "--records", str(records), "--quiet"],
                          capture_output=True, timeout=300)
    return proc.returncode


@pytest.mark.parametrize(("mode", "nth"), [
    ("save_half", 0),  # killed while the report's temporary file is half-written
    ("before_replace", 1),  # the report is complete on disk but not yet renamed
    ("after_replace", 1),  # the report is staged beside its target, nothing renamed yet
    ("after_replace", 2),  # the record is in place, the report not yet renamed
    ("after_replace", 3),  # everything renamed: the run landed, just before the process exits
])
@pytest.mark.slow  # a run in a child process per case
def test_sigkill_at_a_chosen_point(previous: tuple[Path, Path, bytes], tmp_path: Path,
                                   mode: str, nth: int) -> None:
    workbook, report, records = _workspace(previous, tmp_path)
    old_records = _records(records)
    code = _kill_run(workbook, report, records, mode, nth)
    assert code == -signal.SIGKILL
    outcome = _assert_consistent(report, records, previous[2], old_records)
    expected = {("after_replace", 2): "record_only", ("after_replace", 3): "new"}
    assert outcome == expected.get((mode, nth), "previous")


@pytest.mark.slow  # a run in a child process per case
def test_sigkill_at_an_arbitrary_moment(previous: tuple[Path, Path, bytes], tmp_path: Path) -> None:
    workbook, report, records = _workspace(previous, tmp_path)
    old_records = _records(records)
    proc = subprocess.Popen([sys.executable, "-m", "allocator.cli", "run", str(workbook), "--report",
                             str(report), "--records", str(records), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    _assert_consistent(report, records, previous[2], old_records)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # openpyxl's abandoned writer
def test_writer_raising_keeps_previous_report(previous: tuple[Path, Path, bytes], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process: the workbook writer fails half-way; exit 70, old report, no record, no temp."""
    from openpyxl.workbook.workbook import Workbook

    workbook, report, records = _workspace(previous, tmp_path)
    old_records = _records(records)

    def broken_save(self: Workbook, filename: str) -> None:
        Path(filename).write_bytes(b"PK\x03\x04 half a workbook")
        raise OSError("disk full")

    monkeypatch.setattr(Workbook, "save", broken_save)
    result = CliRunner().invoke(app, ["run", str(workbook), "--report", str(report),
                                      "--records", str(records)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert report.read_bytes() == previous[2]
    assert _records(records) == old_records
    assert [p.name for p in report.parent.iterdir()] == ["T1.xlsx"]  # the temporary file is gone
    assert sorted(p.name for p in (records / "T1").iterdir()) == sorted(old_records)
    gc.collect()  # openpyxl's unfinished row writers warn when collected: collect them here


# --- cleaning up after a kill -------------------------------------------------------------------
def _leftovers(folder: Path) -> list[Path]:
    from allocator.atomic import is_leftover

    return [p for p in folder.rglob("*") if is_leftover(p)]


def _age(paths: list[Path], seconds: float = 3600) -> None:
    import os

    past = time.time() - seconds
    for p in paths:
        os.utime(p, (past, past), follow_symlinks=False)


@pytest.mark.slow
def test_a_later_run_removes_what_a_killed_run_left(previous: tuple[Path, Path, bytes],
                                                    tmp_path: Path) -> None:
    """Killed half-way through saving the report: its staging folder (record) and file (report)
    stay behind; the next run removes both, once they are older than the minimum age."""
    workbook, report, records = _workspace(previous, tmp_path)
    assert _kill_run(workbook, report, records, "save_half", 0) == -signal.SIGKILL
    left = _leftovers(tmp_path)
    # the record's staging folder, the report's staging file, the MPS spool (allocator.beside)
    assert {p.parent for p in left} == {report.parent, records / "T1", records}, left
    # young leftovers are kept (a second guard beside the lock)
    result = CliRunner().invoke(app, ["run", str(workbook), "--report", str(report), "--records",
                                      str(records), "--quiet"])
    assert result.exit_code == 0, result.output
    assert set(left) <= set(_leftovers(tmp_path))
    _age(left)
    result = CliRunner().invoke(app, ["run", str(workbook), "--report", str(report), "--records",
                                      str(records), "--quiet"])
    assert result.exit_code == 0, result.output
    assert _leftovers(tmp_path) == []
    chain = CliRunner().invoke(app, ["verify", "--chain", str(records / "T1")])
    assert chain.exit_code == 0, chain.output


HOLDER = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_a_leftover_a_live_run_holds_is_kept(tmp_path: Path) -> None:
    from allocator.atomic import clean_leftovers

    staging = tmp_path / ".20261204T000000Z-x.abc123.tmp"
    staging.mkdir()
    (staging / "round.json").write_text("{}")
    mine = tmp_path / ".report.xlsx.zzz.tmp"
    mine.write_text("half")
    not_ours = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / "T1.xlsx"]
    for p in not_ours:
        p.write_text("keep")
    _age([staging, mine, *not_ours])
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(staging)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        removed = clean_leftovers(tmp_path)
        assert removed == [mine]  # the held staging folder stays
        assert staging.is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert clean_leftovers(tmp_path) == [staging]  # the kernel released the dead run's lock
    assert all(p.exists() for p in not_ours)


def test_a_running_write_holds_its_lock(tmp_path: Path) -> None:
    """atomic_dir and atomic_path lock their staging names while the caller writes."""
    import fcntl
    import os

    from allocator.atomic import atomic_dir, atomic_path

    with atomic_dir(tmp_path / "rec") as staging:
        fd = os.open(staging, os.O_RDONLY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    with atomic_path(tmp_path / "f.txt") as staged:
        staged.write_text("x")
        fd = os.open(staged, os.O_RDONLY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    assert (tmp_path / "f.txt").read_text() == "x" and (tmp_path / "rec").is_dir()


@pytest.mark.slow
def test_records_of_a_round_are_chained_one_at_a_time(previous: tuple[Path, Path, bytes],
                                                      tmp_path: Path) -> None:
    """While another run holds the round's chain lock, a run waits, then chains after it."""
    import threading

    workbook, report, records = _workspace(previous, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(records / "T1")], stdout=subprocess.PIPE,
                              text=True)
    done: list[int] = []
    try:
        assert holder.stdout.readline().strip() == "locked"
        runner = threading.Thread(target=lambda: done.append(CliRunner().invoke(
            app, ["run", str(workbook), "--report", str(report), "--records", str(records), "-q"]).exit_code))
        runner.start()
        runner.join(timeout=8)
        assert runner.is_alive() and not done  # waiting for the lock
    finally:
        holder.kill()
        holder.wait()
    runner.join(timeout=120)
    assert done == [0]
    chain = CliRunner().invoke(app, ["verify", "--chain", str(records / "T1")])
    assert chain.exit_code == 0, chain.output
