"""The results table in the layout of the paper's Tables 2 and 3.

One row per model and keypoint subset (overall / visible / occluded), AP columns in percent.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["PAPER_ROWS", "TABLE_COLUMNS", "format_table"]

#: Keypoint subsets of the rows (the metrics' ``_visible`` / ``_occluded`` suffixes).
PAPER_ROWS = ("all", "visible", "occluded")
#: Metric columns of the table.
TABLE_COLUMNS = ("AP", "AP50", "AP75", "APM", "APL", "AR")


def format_table(results: Mapping[str, Mapping[str, float]], *, title: str = "") -> str:
    """Markdown table in the layout of the paper's Tables 2/3: one row per model x keypoint subset.

    ``results`` maps a model name to a flat metrics dict from [`PoseEvaluator`][visattn.metrics.PoseEvaluator]
    (``AP``, ``AP_visible``, ``AP50_occluded``, ..., ``vis_accuracy``). Values are printed in percent.

    Example:
        >>> print(format_table({"r50": {"AP": 0.7, "AP_visible": 0.8, "AP_occluded": 0.5}}).splitlines()[2])
        | r50 | overall | 70.0 | - | - | - | - | - | - |
    """
    head = ["model", "keypoints", *TABLE_COLUMNS, "vis acc"]
    lines = [f"### {title}", ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = {"all": "overall", "visible": "visible", "occluded": "occluded"}
    for name, metrics in results.items():
        for subset in PAPER_ROWS:
            cells = [name, names[subset]]
            for col in TABLE_COLUMNS:
                key = col if subset == "all" else f"{col}_{subset}"
                value = metrics.get(key)
                cells.append("-" if value is None else f"{100 * value:.1f}")
            vis = metrics.get("vis_accuracy") if subset == "all" else None
            cells.append("-" if vis is None or vis != vis else f"{100 * vis:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
