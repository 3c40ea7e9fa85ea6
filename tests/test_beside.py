"""Work done beside HiGHS (allocator.beside): the record's MPS files and chores, while a stage
solves on another thread; the record holds the same files, and failures surface as before."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from allocator import api
from allocator.beside import working_beside
from allocator.engine import solve_round
from allocator.record import verify_record
from allocator.solve import new_highs
from allocator.validate import load_round
from tests.rounds import write


def _fresh_mps(stage, path) -> bytes:
    h = new_highs()
    stage.as_solved.to_highs(h)
    h.writeModel(str(path))
    return path.read_bytes()


def test_run_moves_each_stage_file_spooled_beside_its_solve_into_the_record(tmp_path):
    records = tmp_path / "models"
    out = api.run(write(tmp_path / "t1.xlsx"), report=tmp_path / "r.xlsx", records=records)
    stages = out.solution.stages
    assert len(stages) >= 2
    for i, stage in enumerate(stages, start=1):
        # written beside the solve, then moved (not copied, not written again) into the record
        assert stage.mps_file is not None and not stage.mps_file.exists()
        recorded = out.record.folder / f"stage{i}_{stage.name}.mps"
        assert recorded.read_bytes() == _fresh_mps(stage, tmp_path / f"fresh{i}.mps")
    assert [p.name for p in records.iterdir()] == ["T1"]  # no spool folder left behind
    assert verify_record(out.record.folder).problems == []


def test_chores_run_on_the_calling_thread_while_highs_solves_on_another(tmp_path):
    rnd = load_round(write(tmp_path / "t1.xlsx")).round
    seen = []

    def chore() -> None:
        seen.append((threading.current_thread() is threading.main_thread(),
                      any(t.name == "allocator-highs" for t in threading.enumerate())))

    with working_beside(chores=[chore, chore]):
        solution = solve_round(rnd)
    assert seen == [(True, True), (True, True)]
    assert all(s.mps_file is None for s in solution.stages)  # no spool folder: nothing spooled


def test_a_failing_chore_surfaces_after_the_solve_and_leaves_no_thread(tmp_path):
    rnd = load_round(write(tmp_path / "t1.xlsx")).round

    def chore() -> None:
        raise ValueError("chore failed")

    with pytest.raises(ValueError, match="chore failed"), working_beside(chores=[chore]):
        solve_round(rnd)
    assert not any(t.name == "allocator-highs" for t in threading.enumerate())


def test_a_round_copy_does_not_keep_the_original_canonical_json(tmp_path):
    rnd = load_round(write(tmp_path / "t1.xlsx")).round
    before = rnd.canonical_json()
    copy = rnd.model_copy(update={"settings": rnd.settings.model_copy(update={"mip_gap": 0.01})})
    assert copy.canonical_json() != before
    assert '"mip_gap":0.01' in copy.canonical_json() and rnd.canonical_json() == before


class _BlockedHighs:
    """Stands in for a HiGHS instance whose run() lasts until the test releases it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.finished = threading.Event()

    def run(self) -> str:
        self.started.set()
        self.release.wait(timeout=5)
        self.finished.set()
        return "done"


def test_an_interrupt_does_not_wait_for_the_stage_to_end():
    from allocator.beside import run_beside

    highs = _BlockedHighs()

    def interrupted() -> None:
        highs.started.wait(timeout=60)
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt), working_beside(chores=[interrupted]):
            run_beside(highs, "outcome")  # type: ignore[arg-type]
        assert not highs.finished.is_set()  # returned while the stage was still running
    finally:
        highs.release.set()


def test_what_the_report_derives_from_the_prices_lp_is_made_beside_and_equals_its_own(tmp_path):
    from allocator.explain import PRICE_EFFECTS, _price_effects
    from allocator.sensitivity import PRICES_RANGING, sensitivity
    from benchmarks.synthetic import write_synthetic_round

    # 300 programs: about 3,000 columns, so the Sensitivity sheet is HiGHS's ranging
    rnd = load_round(write_synthetic_round(tmp_path / "s.xlsx", 300, 0)).round
    with working_beside(for_report=True):
        made_beside = solve_round(rnd)
    assert {PRICE_EFFECTS, PRICES_RANGING} <= made_beside.derived.keys()
    own = solve_round(rnd)  # outside a run: the report makes them itself
    assert not own.derived
    ours, theirs = sensitivity(made_beside), sensitivity(own)
    assert ours.available and not ours.exact
    pd.testing.assert_frame_equal(ours.rows, theirs.rows)
    pd.testing.assert_frame_equal(ours.programs, theirs.programs)
    assert abs(made_beside.derived[PRICE_EFFECTS] - _price_effects(own)).max() == 0
