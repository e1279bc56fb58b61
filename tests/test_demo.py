"""The demo behind `make demo`, run end to end on a tiny budget."""

from __future__ import annotations

import csv
import json

import pytest

import jaxtune as jt
from jaxtune import demo

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_demo_writes_results_table_and_figures(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    # One CPU device, as the rest of the test process expects (the demo asks for one per core).
    monkeypatch.setenv("JAXTUNE_CPU_DEVICES", "1")
    out = tmp_path / "demo"
    status = demo.main(["--out", str(out), "--num-configs", "4", "--num-steps", "20",
                        "--steps-per-segment", "10"])
    assert status == 0
    printed = capsys.readouterr().out

    saved = json.loads((out / "results.json").read_text())
    assert len(saved["rows"]) == 4
    results = jt.Results.load(out)
    assert all(row.status == "completed" for row in results)
    assert all(row.curve_steps == [10, 20] for row in results)  # one point per segment
    with open(out / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 4
    assert {"config.learning_rate", "metrics.valid_accuracy"} <= set(table[0])
    assert [float(r["metrics.valid_accuracy"]) for r in table] == [
        row.metrics["valid_accuracy"] for row in results]

    for name in ("summary", "learning_curves", "best_so_far", "parallel_coordinates"):
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) > 1000, name

    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rank", "member"])
    assert "valid_accuracy" in lines[header] and "learning_rate" in lines[header]
    body = [line.split() for line in lines[header + 1 : header + 7]]
    body = [cells for cells in body if cells and not set(cells[0]) <= {"-", "+", "|"}]
    assert [cells[0] for cells in body[:4]] == ["1", "2", "3", "4"]
    best = results.best("valid_accuracy", mode="max")
    assert body[0][1] == str(best.member_id)
    assert "4 members in" in printed and "2 static groups" in printed
