"""``trials.png``: every trial's validation curve, coloured by how the trial ended.

The picture a user checks after a search: which trials the scheduler stopped and when, which
ran to the end, and where the best one pulled ahead. Drawn with matplotlib's Agg canvas on a
private figure (no pyplot state, safe in any thread).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

# stop reason -> (colour, label); the best trial is drawn on top in black
_STYLES = {
    "completed": ("tab:blue", "ran to the end"),
    "patience": ("tab:orange", "stopped: no gain (patience)"),
    "scheduler": ("tab:gray", "stopped by the scheduler"),
    "diverged": ("tab:red", "diverged"),
    "error": ("tab:red", "error"),
    "interrupted": ("tab:purple", "interrupted"),
}


def plot_trials(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    stop_reasons: Mapping[str, str],
    metric: str,
    best_trial: str | None = None,
    title: str = "",
) -> bytes:
    """PNG of validation ``metric`` per epoch, one line per trial.

    Args:
        curves: trial id -> (epochs, validation values) as reported to Ray.
        stop_reasons: trial id -> ``completed``, ``patience``, ``scheduler``, ...
        metric: the metric's name, for the axis label (``ndcg_at_10``).
        best_trial: drawn thick and black, with its best epoch marked.
        title: the figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    labelled: set[str] = set()
    for trial_id, (epochs, values) in curves.items():
        if not len(epochs) or trial_id == best_trial:
            continue
        reason = stop_reasons.get(trial_id, "completed")
        colour, label = _STYLES.get(reason, ("tab:gray", reason))
        ax.plot(
            epochs,
            values,
            color=colour,
            alpha=0.75,
            linewidth=1.0,
            label=None if label in labelled else label,
        )
        labelled.add(label)
        if reason == "scheduler":
            ax.plot(epochs[-1], values[-1], "x", color=colour, markersize=6)
    if best_trial is not None and best_trial in curves and len(curves[best_trial][0]):
        epochs, values = curves[best_trial]
        ax.plot(epochs, values, color="black", linewidth=2.2, label=f"best trial ({best_trial})")
        at = max(range(len(values)), key=lambda k: values[k])
        ax.plot(epochs[at], values[at], "o", color="black", markersize=6)
    ax.set_xlabel("epochs trained")
    ax.set_ylabel(f"validation {metric.replace('_at_', '@')}")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if labelled or best_trial is not None:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
