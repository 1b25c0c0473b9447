"""What prediction and evaluation write and print: the CSV files and the console tables.

* :func:`write_predictions_csv` - the SPEC 5 CSV of ``tools/predict.py``
  (``file,pm_probability,label,class_name``);
* :func:`write_evaluation_csv` - ``predictions.csv`` of ``tools/eval.py`` (the
  same columns and ``true_label``);
* :func:`format_predictions_table` - the table ``tools/predict.py`` prints;
* :func:`format_report` - the report ``tools/eval.py`` prints, the model next to
  the majority-class baseline.

Chinese characters count two columns wide in the tables.  Files are written
atomically (temporary file, then rename), with cells a spreadsheet could take for
a formula neutralised (:func:`paddle_palm.fileio.spreadsheet_safe`).
"""

import csv
import os
from pathlib import Path

import numpy as np

from paddle_palm.fileio import atomic_path, make_parent_dirs, spreadsheet_safe
from paddle_palm.metrics import class_name

#: Columns of the SPEC 5 predictions CSV.
CSV_COLUMNS = ("file", "pm_probability", "label", "class_name")

__all__ = [
    "CSV_COLUMNS",
    "display_width",
    "format_predictions_table",
    "format_report",
    "write_evaluation_csv",
    "write_predictions_csv",
]


def _write_csv(path, header, rows):
    """Write ``header`` and ``rows`` as a UTF-8 CSV file, atomically; return the path."""
    path = Path(path)
    make_parent_dirs(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
    return path


def write_predictions_csv(records, path):
    """Write the SPEC 5 CSV (``file,pm_probability,label,class_name``, UTF-8) atomically.

    ``pm_probability`` is written with 6 decimals.  Returns the path.
    """
    with_decision = any("decision" in r for r in records)  # --refer-band: one more column
    rows = ([spreadsheet_safe(r["file"]), f"{r['pm_probability']:.6f}", r["label"], spreadsheet_safe(r["class_name"])]
            + ([r.get("decision", "")] if with_decision else []) for r in records)
    return _write_csv(path, CSV_COLUMNS + (("decision",) if with_decision else ()), rows)


def write_evaluation_csv(path, files, probabilities, predictions, labels, classes=None, classes_zh=None):
    """Write an evaluation's ``predictions.csv``: the SPEC 5 columns and ``true_label``, one row per image."""
    rows = ([spreadsheet_safe(os.fspath(f)), f"{p:.6f}", int(pred),
             spreadsheet_safe(class_name(int(pred), classes, classes_zh)), int(true)]
            for f, p, pred, true in zip(files, probabilities, predictions, labels))
    return _write_csv(path, CSV_COLUMNS + ("true_label",), rows)


def display_width(text):
    """Columns ``text`` takes in a terminal: a Chinese character takes two."""
    return sum(2 if ord(ch) >= 0x2E80 else 1 for ch in text)


def _pad(text, width):
    return text + " " * max(0, width - display_width(text))


def _fmt(value, digits=4):
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def format_predictions_table(records):
    """A readable table of prediction records (Chinese characters count two columns wide)."""
    show_truth = any(r.get("true_label") is not None for r in records)
    show_decision = any("decision" in r for r in records)
    header = ["file", "pm_probability", "label", "class_name", "confidence"] + (["decision"] if show_decision else []) \
        + (["true"] if show_truth else [])
    rows = []
    for r in records:
        row = [r["file"], f"{r['pm_probability']:.4f}", str(r["label"]), r["class_name"], f"{r['confidence']:.4f}"]
        if show_decision:
            row.append(r.get("decision", ""))
        if show_truth:
            t = r.get("true_label")
            row.append("?" if t is None else (f"{t} ok" if t == r["label"] else f"{t} WRONG"))
        rows.append(row)
    widths = [max(display_width(x) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(_pad(x, w) for x, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(_pad(x, w) for x, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _metric_lines(summary, majority_name):
    base = summary.get("baseline") or {}
    lines = [f"{'metric':<13}{'model':>10}   majority-class baseline (always {majority_name})"]
    rows = [("loss", summary.get("loss"), None), ("accuracy", summary["accuracy"], base.get("accuracy")),
            ("AUC", summary["auc"], base.get("auc")), ("sensitivity", summary["sensitivity"], base.get("sensitivity")),
            ("specificity", summary["specificity"], base.get("specificity")),
            ("precision", summary["precision"], None), ("F1", summary["f1"], None)]
    for name, value, baseline in rows:
        lines.append(f"{name:<13}{_fmt(value):>10}   {_fmt(baseline) if baseline is not None else '':>}")
    return lines


def _confusion_lines(summary, labels):
    cm = summary["confusion_matrix"]
    row_names = [f"true {k} {labels[k]}" for k in range(len(cm))]
    width = max(display_width(s) for s in row_names) + 2
    lines = ["", "confusion matrix (rows: true class, columns: predicted class)"]
    lines.append(" " * width + "".join(f"{'pred ' + str(k):>10}" for k in range(len(cm))))
    for name, row in zip(row_names, cm):
        lines.append(name + " " * (width - display_width(name)) + "".join(f"{v:>10}" for v in row))
    lines += ["", "per-class accuracy"]
    for k, acc in enumerate(summary.get("per_class_accuracy", [])):
        total = sum(cm[k])
        lines.append(f"  {labels[k]}: {_fmt(None if acc is None else 100 * acc, 2)} % ({cm[k][k]} of {total})")
    return lines


def _interval(value, ci):
    if value is None or ci is None or ci[0] is None:
        return "n/a"
    return f"{value:.4f}  (95% CI {ci[0]:.3f}-{ci[1]:.3f})"


def _screening_lines(summary):
    """The operating point with its intervals, the calibration and the refer table (PALM evaluations)."""
    op = summary.get("operating_point")
    if not op:
        return []
    recorded = summary.get("recorded_operating_point") or {}
    origin = (f"rule {op['rule']}, chosen on the run's {recorded.get('n')} validation images"
              if recorded and op.get("rule") == recorded.get("rule") else f"rule {op['rule']}")
    lines = ["", f"operating point: threshold {op['threshold']:.4f} ({origin})",
             f"  sensitivity  {_interval(op['sensitivity'], op['sensitivity_ci'])}, {op['n_pm']} PM images",
             f"  specificity  {_interval(op['specificity'], op['specificity_ci'])}, {op['n_non_pm']} other images"]
    cal = summary.get("calibration") or {}
    if cal:
        temperature = summary.get("temperature") or 1.0
        lines.append(f"  calibration  Brier score {_fmt(cal.get('brier'))}, expected calibration error "
                     f"{_fmt(cal.get('ece'))} ({cal.get('bins')} bins; temperature {temperature:.3g})"
                     + ("; flip TTA" if summary.get("tta") else ""))
    refer = summary.get("refer") or {}
    if refer.get("table"):
        lines += ["", "refer band (probabilities within +-band of the threshold go to a specialist)",
                  f"  {'band':>6} {'decided':>8} {'referred':>9} {'accuracy':>9} {'sensitivity':>12} "
                  f"{'specificity':>12} {'missed PM':>10}"]
        for row in refer["table"]:
            mark = "  <- --refer-band" if refer.get("band") is not None and row["band"] == refer["band"] else ""
            lines.append(f"  {row['band']:>6g} {row['decided']:>8d} {row['referred']:>9d} {_fmt(row['accuracy']):>9} "
                         f"{_fmt(row['sensitivity']):>12} {_fmt(row['specificity']):>12} {row['missed_pm']:>10d}{mark}")
    return lines


def format_report(summary):
    """A readable report of an evaluation summary (what ``tools/eval.py`` prints).

    Args:
        summary: what :func:`paddle_palm.engine.evaluate.evaluate_checkpoint` returns.
    """
    classes, classes_zh = summary.get("classes"), summary.get("classes_zh")
    majority = (summary.get("baseline") or {}).get("class")
    head = (f"{summary.get('arch', 'model')} ({summary.get('weights', '')}) on {summary['n']} "
            f"{summary.get('split', 'valid')} images of {summary.get('data_dir', '')}, "
            f"image size {summary.get('image_size')}, preprocessing {summary.get('preprocess')}, "
            f"threshold {summary['threshold']:g}")
    majority_name = class_name(majority, classes, classes_zh) if majority is not None else "?"
    lines = [head, ""] + _metric_lines(summary, majority_name)
    labels = [class_name(k, classes, classes_zh) for k in range(len(summary["confusion_matrix"]))]
    lines += _confusion_lines(summary, labels)
    lines += _screening_lines(summary)
    thresholds = summary.get("thresholds") or {}
    if thresholds:
        lines += ["", "other thresholds on these images (for choosing an operating point, not a held-out estimate)"]
        for name, t in thresholds.items():
            lines.append(f"  {name:<17} threshold {_fmt(t['threshold'])}  sensitivity {_fmt(t['sensitivity'])}  "
                         f"specificity {_fmt(t['specificity'])}")
    files = summary.get("files") or {}
    if files:
        lines += ["", "wrote " + ", ".join(files.values())]
    return "\n".join(lines)
