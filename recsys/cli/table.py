"""Plain-text metric tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

TABLE_METRICS = ("recall", "ndcg", "mrr", "hit", "precision", "map")


def metrics_table(
    rows: Sequence[tuple[str, object, float | None, dict[str, float]]],
    topk: Sequence[int],
    first: str = "model",
) -> str:
    """Rows of (name, best epoch, seconds, metrics) as an aligned table, one column per metric@K.

    The epoch and time columns are left out when no row has a value for them (``recsys
    evaluate`` rows are parts of one run, not trainings)."""
    # the usual metrics first, then any other the run asked for (recall_min, coverage, ...);
    # slice keys (recall_at_20_tail) stay in metrics.json
    names = list(TABLE_METRICS)
    for _, _, _, metrics in rows:
        for key in metrics:
            metric, _, k_text = key.rpartition("_at_")
            if metric and k_text.isdigit() and metric not in names:
                names.append(metric)
    columns = [f"{m}@{k}" for k in topk for m in names if any(f"{m}_at_{k}" in r[3] for r in rows)]
    header = [first, "epoch", "time_s", *columns]
    body = []
    for name, epoch, seconds, metrics in rows:
        cells = [str(name), str(epoch), "" if seconds is None else f"{seconds:.1f}"]
        for col in columns:
            metric, k = col.split("@")
            value = metrics.get(f"{metric}_at_{k}")
            cells.append("" if value is None else f"{value:.4f}")
        body.append(cells)
    empty = [i for i in (1, 2) if all(not cells[i] for cells in body)]
    header = [c for i, c in enumerate(header) if i not in empty]
    body = [[c for i, c in enumerate(cells) if i not in empty] for cells in body]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
