"""bench/report.py: the stamped and the latest pair of result files."""

import json
import os

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
