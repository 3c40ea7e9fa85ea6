"""The scale benchmark runs with one command, and what it compares is what the engine solved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.run import PHASES, main

pytestmark = pytest.mark.slow  # a whole benchmark run and its replay


def test_benchmark_smoke_run_times_every_phase_and_replays_the_record(tmp_path: Path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--sizes", "100", "--compare", "--json", str(out), "--workdir",
                 str(tmp_path / "work")]) == 0
    printed = capsys.readouterr().out
    assert "ratio engine end-to-end / bare HiGHS" in printed
    assert "bare HiGHS on the stage-1 MPS alone" in printed
    data = json.loads(out.read_text())
    (result,) = data["results"]
    assert all(result["times"].get(key) is not None for key, _ in PHASES)
    bare = data["bare"]["100"]["engine"]
    # Every MPS file of the record, solved by bare HiGHS with the options the record keeps,
    # reaches the objective the engine reached in that stage.
    assert [b["file"] for b in bare] == [Path(p).name for p in result["mps"]]
    assert len(bare) == len(result["stages"])
    for stage, replay in zip(result["stages"], bare, strict=True):
        assert replay["status"] == "Optimal"
        assert abs(replay["objective"] - stage["objective"]) <= 1e-6 * max(1.0, abs(stage["objective"]))
