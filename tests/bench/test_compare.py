"""The bench's result files and their comparison (bench/results.py, bench/compare.py): the arithmetic only, on
made-up figures; no test asserts a timing goal (the figures themselves belong to `make bench`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import compare, results


def _result(speed: float, **figures: tuple[float, bool]) -> dict[str, Any]:
    return {"machine_speed_s": {"start": speed, "end": speed},
            "figures": {name: {"value": value, "unit": "ms", "higher_is_better": higher}
                        for name, (value, higher) in figures.items()}}


def test_a_figure_worse_by_more_than_the_margin_regresses_in_its_own_direction() -> None:
    old = _result(0.2, heal=(10.0, False), rps=(1000.0, True), p99=(2.0, False))
    new = _result(0.2, heal=(12.5, False), rps=(850.0, True), p99=(2.1, False), only_new=(1.0, False))
    changes = {c.name: c for c in compare.compare(old, new, margin=0.2)}
    assert set(changes) == {"heal", "rps", "p99"}  # a figure in one file only is not compared
    assert changes["heal"].regressed and not changes["rps"].regressed and not changes["p99"].regressed
    assert {c.name for c in compare.compare(old, _result(0.2, rps=(790.0, True)))} == {"rps"}
    assert compare.compare(old, _result(0.2, rps=(790.0, True)))[0].regressed


def test_different_machine_speeds_are_said() -> None:
    assert compare.speeds_differ(_result(0.2), _result(0.3))
    assert not compare.speeds_differ(_result(0.2), _result(0.21))


def test_the_command_compares_two_written_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results.record("faults.partition_heal_ms", 21.7, "ms", 10.0, label="partition heal")
    try:
        written = results.write(0.203, 0.205, tmp_path / "a.json")
    finally:
        results._FIGURES.clear()
    document = json.loads(written.read_text())
    assert document["machine_speed_s"] == {"start": 0.203, "end": 0.205}
    assert document["figures"]["faults.partition_heal_ms"]["goal"] == 10.0
    faster = dict(document, figures={"faults.partition_heal_ms": dict(document["figures"]["faults.partition_heal_ms"],
                                                                      value=6.0)})
    (tmp_path / "b.json").write_text(json.dumps(faster))
    assert compare.main([str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    assert compare.main([str(tmp_path / "b.json"), str(tmp_path / "a.json")]) == 1
    assert "REGRESSED" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        compare.main([str(tmp_path / "a.json"), str(tmp_path / "bad.json")])
    assert exit_info.value.code == 2
    assert "bad.json: not a bench result file" in capsys.readouterr().err
