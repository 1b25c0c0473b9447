"""bench/report.py: the stamped and the latest pair of result files."""

import json
import os

from bench import report
from bench.report import write_results


def test_both_pairs_hold_the_same_report_and_no_temporary_is_left(tmp_path):
    out = tmp_path / "results"
    written = write_results(out, "demo-", {"auc": 0.99, "path": tmp_path}, "| a |", stamp="20260101-000000")
    assert written == out / "demo-20260101-000000.md"
    for name in ("demo-20260101-000000", "demo-latest"):
        assert json.loads((out / f"{name}.json").read_text()) == {"auc": 0.99, "path": str(tmp_path)}
        assert (out / f"{name}.md").read_text() == "| a |\n"
    assert sorted(os.listdir(out)) == ["demo-20260101-000000.json", "demo-20260101-000000.md",
                                       "demo-latest.json", "demo-latest.md"]
    # A later report replaces the latest pair and keeps the earlier stamped one.
    write_results(out, "demo-", {"auc": 0.5}, "b\n", stamp="20260102-000000")
    assert json.loads((out / "demo-latest.json").read_text()) == {"auc": 0.5}
    assert (out / "demo-20260101-000000.md").read_text() == "| a |\n"


def test_reports_of_the_same_second_keep_their_own_files(tmp_path, monkeypatch):
    monkeypatch.setattr(report.time, "strftime", lambda fmt: "20260103-120000")  # two studies side by side
    out = tmp_path / "results"
    first = write_results(out, "demo-", {"seed": 0}, "zero")
    second = write_results(out, "demo-", {"seed": 1}, "one")
    third = write_results(out, "demo-", {"seed": 2}, "two")
    assert [first.name, second.name, third.name] == ["demo-20260103-120000.md", "demo-20260103-120000-2.md",
                                                      "demo-20260103-120000-3.md"]
    assert [p.read_text() for p in (first, second, third)] == ["zero\n", "one\n", "two\n"]
    assert json.loads((out / "demo-20260103-120000-2.json").read_text()) == {"seed": 1}
    assert (out / "demo-latest.md").read_text() == "two\n"
    # A stamp given by the caller is its own: written again in place.
    assert write_results(out, "demo-", {"seed": 3}, "three", stamp="20260103-120000") == first
    assert first.read_text() == "three\n"
