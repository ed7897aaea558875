"""The probe report: one self-contained HTML page and ``report.json`` with the same numbers.

The page embeds every plot as a base64 PNG (matplotlib, drawn with the Agg canvas on private
``Figure`` objects, so no global pyplot state is touched) and needs no network, script or
external file. Sections (``<section id=...>``): ``setup``, ``quality``, ``training``,
``activations``, ``concepts``, ``baselines``, ``ablation``, ``latents`` (the per-latent cards),
``itda`` and ``notes``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.jsonio import dumps_json
from recsys.probe.pipeline import ProbeResult
from recsys.train.checkpoint import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from recsys.probe.concepts import LatentConcept

SECTIONS = (
    ("setup", "Setup"),
    ("quality", "SAE quality"),
    ("training", "Training"),
    ("activations", "Activations"),
    ("concepts", "Concepts"),
    ("baselines", "Baselines"),
    ("ablation", "Ablation and steering"),
    ("latents", "Latent cards"),
    ("itda", "ITDA dictionary"),
    ("notes", "Notes"),
)
"""(id, title) of every section of the page, in order."""

COLORS = {"sae": "#1f77b4", "untrained": "#ff7f0e", "neurons": "#2ca02c"}
LABELS = {"sae": "trained SAE", "untrained": "untrained SAE", "neurons": "raw neurons"}


# ----------------------------------------------------------------------------- the plots


def _png(draw: Callable[[Any], None], size: tuple[float, float] = (7.0, 3.2)) -> str:
    """Draw on a fresh Agg figure and return it as a base64 PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110)
    FigureCanvasAgg(fig)
    draw(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_training(result: ProbeResult) -> str:
    """FVU and dead-latent share per epoch; the selection metric per epoch."""
    hist = result.history
    epochs = [h["epoch"] for h in hist]
    select_key = next((k for k in hist[0] if k.startswith("valid_") and k != "fvu_valid"), None)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot(1, 2, 1)
        ax.plot(epochs, [h["fvu"] for h in hist], color="#1f77b4", label="FVU")
        ax.set_xlabel("epoch")
        ax.set_ylabel("FVU", color="#1f77b4")
        ax.set_yscale("log")
        ax2 = ax.twinx()
        ax2.plot(epochs, [h["dead_fraction"] for h in hist], color="#d62728", ls="--")
        ax2.set_ylabel("dead latents (share)", color="#d62728")
        ax2.set_ylim(0, max(0.05, max(h["dead_fraction"] for h in hist) * 1.2))
        ax.axvline(result.quality["best_epoch"], color="grey", lw=0.8, ls=":")
        ax.set_title("reconstruction and dead latents")
        ax = fig.add_subplot(1, 2, 2)
        if select_key is not None:
            metric = result.quality.get("valid_metric", "ndcg_at_10")
            ax.plot(epochs, [h[select_key] for h in hist], color="#1f77b4", label="with SAE")
            base = result.quality["valid_base"][metric]
            ax.axhline(base, color="black", ls="--", lw=1, label="base model")
            ax.axhline(0.95 * base, color="grey", ls=":", lw=1, label="95% of base")
            ax.set_ylabel(f"validation {metric.replace('_at_', '@')}")
            ax.legend(fontsize=8, loc="lower right")
        else:
            # selected on FVU: on held-out rows when train_sae had them, else the training FVU
            key = "fvu_valid" if "fvu_valid" in hist[0] else "fvu"
            ax.plot(epochs, [h[key] for h in hist], color="#1f77b4")
            ax.set_ylabel("FVU (selection)")
        ax.axvline(result.quality["best_epoch"], color="grey", lw=0.8, ls=":")
        ax.set_xlabel("epoch")
        ax.set_title("model selection")

    return _png(draw)


def plot_frequency(result: ProbeResult) -> str:
    """Histogram of log10 activation frequency (share of instances a latent fires on)."""

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot(1, 1, 1)
        bins = np.linspace(-4, 0, 33)
        for name in ("sae", "untrained"):
            freq = np.asarray(result.frequencies.get(name, []), dtype=float)
            if not len(freq):
                continue
            alive = freq[freq > 0]
            dead = int((freq == 0).sum())
            ax.hist(
                np.log10(np.clip(alive, 1e-4, 1)),
                bins=bins,
                histtype="step" if name != "sae" else "stepfilled",
                alpha=0.6 if name == "sae" else 1.0,
                color=COLORS[name],
                label=f"{LABELS[name]} ({dead} dead)",
                lw=1.5,
            )
        ax.set_xlabel("log10 activation frequency")
        ax.set_ylabel("latents")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.set_title("how often each latent fires")

    return _png(draw, (7.0, 3.0))


def plot_confidence(result: ProbeResult) -> str:
    """Histogram of interpretation confidence for the SAE and the baselines."""
    groups = {"sae": result.concepts, **result.baseline_concepts}
    threshold = result.config.concepts.confidence_threshold

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot(1, 1, 1)
        bins = np.linspace(0, 1, 21)
        for name, concepts in groups.items():
            conf = np.array([c.confidence for c in concepts if math.isfinite(c.confidence)])
            if not len(conf):
                continue
            ax.hist(
                conf,
                bins=bins,
                histtype="stepfilled" if name == "sae" else "step",
                alpha=0.6 if name == "sae" else 1.0,
                color=COLORS[name],
                lw=1.5,
                label=f"{LABELS[name]} ({len(conf)} evaluated)",
            )
        ax.axvline(threshold, color="black", ls="--", lw=1)
        ax.text(threshold, ax.get_ylim()[1] * 0.95, " interpretable", fontsize=8, va="top")
        ax.set_xlabel("confidence (balanced accuracy on held-out instances)")
        ax.set_ylabel("latents")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no latent could be evaluated", ha="center", transform=ax.transAxes)
        ax.set_title("interpretation confidence")

    return _png(draw, (7.0, 3.0))


def plot_ablation(result: ProbeResult, n: int = 15) -> str:
    """Per latent: drop of the concept's top-K share when ablated, vs random controls."""
    effects = result.effects[:n]

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot(1, 1, 1)
        y = np.arange(len(effects))
        h = 0.2
        series = (
            ("drop", "ablate the latent", "#1f77b4"),
            ("random_latent_drop", "ablate a random latent", "#ff7f0e"),
            ("random_direction_drop", "random direction, same norm", "#7f7f7f"),
            ("steer_gain", f"steer x{result.config.ablation.steer_scale:g} (gain)", "#2ca02c"),
        )
        for i, (key, label, color) in enumerate(series):
            ax.barh(
                y + (i - 1.5) * h, [getattr(e, key) for e in effects], h, color=color, label=label
            )
        ax.set_yticks(y)
        ax.set_yticklabels([f"#{e.latent} {_short(e.concept, 28)}" for e in effects], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"change of the concept's share of top-{result.config.ablation.k}")
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title("ablation (drop) and steering (gain) of concept latents")

    return _png(draw, (7.5, 0.9 + 0.42 * max(len(effects), 1)))


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# ------------------------------------------------------------------------------ the page


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return "∞" if value > 0 else ("–" if math.isnan(value) else "−∞")
        if abs(value) < 1e-12:
            return "0"
        if abs(value) < 10 ** (-digits):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else _fmt(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class _Raw(str):
    """HTML that is already escaped."""


def _img(b64: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">'


def _kv(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v if isinstance(v, _Raw) else _fmt(v)}</td></tr>"
        for k, v in pairs
    )
    return f'<table class="kv">{rows}</table>'


def _section_setup(r: ProbeResult) -> str:
    s = r.setup
    pairs = [
        ("model", s["model"]),
        ("dataset", s["dataset"]),
        ("probe site", f"{s['site']} ({s['kind']} rows)"),
        ("read by the scorer", s["scoring_site"]),
        ("instances", s["n_instances"]),
        ("input width d", s["d_in"]),
        ("latents m (expansion)", f"{s['n_latents']} ({s['expansion']}x)"),
        ("k (active per instance)", s["k"]),
        ("input normalisation", s["normalize"]),
        (
            "learning rate / batch / max epochs",
            f"{s['learning_rate']:g} / {s['batch_size']} / {s['epochs']}",
        ),
        ("attributes (families)", f"{s['n_attributes']} ({', '.join(s['attribute_families'])})"),
        ("held-out instances", s["n_heldout"]),
        ("model's sites", ", ".join(s["sites"])),
        ("probe time (s)", r.seconds),
    ]
    pairs += [
        (label, s[key])
        for key, label in (
            ("run_dir", "run folder"),
            ("checkpoint", "checkpoint"),
            ("tracking_run_id", "MLflow run"),
        )
        if s.get(key)
    ]
    return _kv(pairs) + f'<p class="small">{html.escape(s["model_repr"])}</p>'


def _section_quality(r: ProbeResult) -> str:
    q = r.quality
    # the analysis below rests on this SAE: say first when it should not be trusted
    parts = [f'<p class="bad"><b>Warning:</b> {html.escape(w)}.</p>' for w in r.warnings]
    parts += [
        _kv(
            [
                ("FVU (trained SAE)", q["fvu"]),
                ("FVU (untrained SAE)", q["fvu_untrained"]),
                ("dead latents (never active)", q["dead_fraction"]),
                ("selected epoch", f"{q['best_epoch']} of {q['epochs_run']}"),
            ]
        )
    ]
    if "valid_base" in q:
        metric = q["valid_metric"]
        keys = list(q["valid_base"])
        rows = []
        for part in ("valid", "test"):
            rows.append([f"{part}: base model", *[q[f"{part}_base"][k] for k in keys]])
            rows.append([f"{part}: SAE reconstruction", *[q[f"{part}_sae"][k] for k in keys]])
        parts.append(_table(["", *[k.replace("_at_", "@") for k in keys]], rows))
        ok = q["valid_retention"] >= 0.95
        if not math.isfinite(q["valid_retention"]):
            # the base model scores 0 on validation: a share of 0 is undefined
            parts.append(
                f"<p>The base model's validation {html.escape(metric.replace('_at_', '@'))} is 0, "
                "so the retention of the SAE reconstruction is undefined.</p>"
            )
        else:
            parts.append(
                f'<p class="{"good" if ok else "bad"}">With the {html.escape(r.setup["site"])} '
                f"representation replaced by its SAE reconstruction the model keeps "
                f"<b>{100 * q['valid_retention']:.1f}%</b> of its validation "
                f"{html.escape(metric.replace('_at_', '@'))} "
                f"({_fmt(100 * q['test_retention'], 1)}% on test).</p>"
            )
    return "".join(parts)


def _section_concepts(r: ProbeResult, limit: int = 80) -> str:
    t = r.config.concepts.confidence_threshold
    named = sorted(
        [c for c in r.concepts if c.attributes],
        key=lambda c: (not c.interpretable(t), -np.nan_to_num(c.confidence, nan=-1), -c.z),
    )
    rows = [
        [
            c.latent,
            _Raw(
                f'<span class="{"good" if c.interpretable(t) else ""}">'
                f"{html.escape(c.label)}</span>"
            ),
            c.lift,
            c.z,
            c.confidence,
            c.recall,
            c.precision,
            c.frequency,
            _deciles(c),
            c.coherence,
        ]
        for c in named[:limit]
    ]
    intro = (
        f"<p>{len(named)} of {len(r.concepts)} latents have a significant concept (z ≥ "
        f"{r.config.concepts.min_z:g}); <b>{len(r.interpretable())}</b> are interpretable "
        f"(confidence ≥ {t:g} on held-out instances). Lift and z compare the top-"
        f"{r.config.concepts.top_n} activating instances with all instances.</p>"
    )
    more = (
        f'<p class="small">({len(named) - limit} more in report.json)</p>'
        if (len(named) > limit)
        else ""
    )
    return (
        intro
        + _table(
            [
                "latent",
                "concept",
                "lift",
                "z",
                "confidence",
                "recall",
                "precision",
                "frequency",
                "activation p10 / p50 / p90",
                "coherence",
            ],
            rows,
            "wide",
        )
        + more
    )


def _deciles(c: LatentConcept) -> str:
    """``p10 / p50 / p90`` of a latent's positive activations (– if it never fires)."""
    d = c.activation_deciles
    return _fmt(None) if d is None else " / ".join(_fmt(d[i], 3) for i in (0, 4, 8))


def _section_baselines(r: ProbeResult, conf_png: str) -> str:
    keys = [
        ("n_latents", "latents"),
        ("n_alive", "alive"),
        ("n_with_concept", "with a concept"),
        ("n_evaluated", "evaluated"),
        # n_interpretable counts against the configured threshold, not RecSAE's 0.8
        ("n_interpretable", f"confidence ≥ {r.config.concepts.confidence_threshold:g}"),
        ("share_interpretable_of_alive", "interpretable / alive"),
        ("coherence", "coherence (RecSAE)"),
        ("n_coherence", "latents in coherence"),
        ("coherence_all", "coherence, all latents"),
        ("n_distinct_concepts", "distinct concepts"),
        ("n_confidence_ge_0_9", "≥ 0.9"),
        ("n_confidence_eq_1", "= 1.0"),
        ("mean_confidence", "mean confidence"),
        ("fvu", "FVU"),
        ("fvu_interpretable_only", "FVU from interpretable latents only"),
    ]
    rows = [[LABELS.get(n, n), *[s.get(k) for k, _ in keys]] for n, s in r.summaries.items()]
    top = r.config.concepts.coherence_top
    dedup = (
        " with distinct top-1 recommended items"
        if r.setup.get("coherence_key", "none") != "none"
        else ""
    )
    return (
        "<p>The same concept pipeline on an untrained SAE (random weights, RecSAE's Init "
        "baseline) and on the "
        "model's raw neurons (each neuron's positive and negative half as two latents). The "
        "last column reconstructs the representation from the interpretable latents alone: "
        "how much of what the model computes the named concepts account for (1 = nothing).</p>"
        f"<p>Coherence (RecSAE): the mean cosine similarity of the model's representations of "
        f"a latent's top {top} activating instances{dedup}, averaged over the interpretable "
        "latents of the SAEs and over all neurons; “coherence, all latents” "
        "averages every latent with two such instances. "
        "Random pairs of instances have "
        f"{_fmt(r.quality.get('coherence_chance'), 3)}.</p>"
        + _table(["", *[label for _, label in keys]], rows)
        + _img(conf_png, "confidence histogram")
    )


def _section_ablation(r: ProbeResult, png: str | None) -> str:
    if not r.effects:
        return (
            "<p>No latent was ablated (no interpretable latent with an item concept, or "
            "the site is not read by the scorer).</p>"
        )
    s = r.ablation
    k = r.config.ablation.k
    ratio = s["drop_ratio_vs_random_latent"]
    summary = _kv(
        [
            ("latents ablated", s["n_ablated"]),
            (f"concept share of top-{k} before", s["mean_share_before"]),
            ("drop when ablating the concept latent", s["mean_drop"]),
            ("drop when ablating a random latent", s["mean_random_latent_drop"]),
            ("drop with a random direction of the same norm", s["mean_random_direction_drop"]),
            ("ratio concept / random latent", ratio),
            (f"gain when steering x{r.config.ablation.steer_scale:g}", s["mean_steer_gain"]),
            (
                f"top-{k} overlap after ablation (concept / random latent)",
                # NaN (no random latent, no validation items) reads "–", not "nan"
                _Raw(f"{_fmt(s['mean_overlap_ablated'], 3)} / {_fmt(s['mean_overlap_random'], 3)}"),
            ),
            (
                f"validation NDCG@{k} of affected users (before → after)",
                _Raw(f"{_fmt(s['mean_ndcg_before'])} → {_fmt(s['mean_ndcg_ablated'])}"),
            ),
        ]
    )
    rows = [
        [
            e.latent,
            e.concept,
            e.n_instances,
            e.share_before,
            e.share_ablated,
            e.drop,
            e.random_latent_drop,
            e.share_steered,
            e.overlap_ablated,
            e.ndcg_before,
            e.ndcg_ablated,
        ]
        for e in r.effects
    ]
    table = _table(
        [
            "latent",
            "concept",
            "instances",
            "share before",
            "after ablation",
            "drop",
            "random-latent drop",
            "after steering",
            "overlap",
            "NDCG before",
            "NDCG after",
        ],
        rows,
        "wide",
    )
    intro = (
        "<p>Each latent is scaled (0 = ablated) where it is active, the change is decoded and "
        "added to the original representation (the SAE error is kept), and the model re-ranks. "
        f"Share = fraction of the top-{k} (training items excluded) that carries the latent's "
        "concept.</p>"
    )
    return intro + summary + (_img(png, "ablation effects") if png else "") + table


def _lift_bars(card: dict[str, Any]) -> str:
    rows = []
    top = card["top_attributes"][:5]
    biggest = max([a["lift"] for a in top if a["lift"] and math.isfinite(a["lift"])] or [1.0])
    for a in top:
        lift = a["lift"] if a["lift"] is not None and math.isfinite(a["lift"]) else 0.0
        width = 100 * lift / biggest if biggest > 0 else 0
        rows.append(
            f'<div class="bar"><span class="name">{html.escape(a["attribute"])}</span>'
            f'<span class="track"><span class="fill" style="width:{width:.0f}%"></span></span>'
            f'<span class="val">{lift:.1f}x</span></div>'
        )
    return "".join(rows)


def _section_cards(r: ProbeResult) -> str:
    if not r.cards:
        return "<p>No latent has a concept.</p>"
    kind = r.setup["kind"]
    item_caption = (
        "top-activating items"
        if kind == "item"
        else "items it promotes most"
        if r.setup["scoring_site"]
        else "items over-represented in its top users' histories"
    )
    out = []
    for c in r.cards:
        badge = (
            '<span class="badge good">interpretable</span>'
            if c["interpretable"]
            else '<span class="badge">low confidence</span>'
        )
        desc = (
            f'<p class="desc">“{html.escape(c["description"])}”</p>' if c.get("description") else ""
        )
        items = "".join(f"<li>{html.escape(t)}</li>" for t in c["top_items"])
        terms = (
            f'<p class="small">TF-IDF terms: {html.escape(", ".join(c["terms"]))}</p>'
            if c["terms"]
            else ""
        )
        out.append(
            '<div class="card">'
            f'<div class="head"><b>latent {c["latent"]}</b> {badge}</div>'
            f'<div class="concept">{html.escape(c["label"])}</div>{desc}'
            f'<p class="small">confidence {_fmt(c["confidence"], 2)} · recall '
            f"{_fmt(c['recall'], 2)} · precision {_fmt(c['precision'], 2)} · fires on "
            f"{100 * c['frequency']:.1f}% · lift {_fmt(c['lift'], 2)} · z {_fmt(c['z'], 1)}</p>"
            f"{_lift_bars(c)}"
            f'<p class="small"><b>{item_caption}</b></p><ol>{items}</ol>{terms}'
            "</div>"
        )
    return '<div class="cards">' + "".join(out) + "</div>"


def _section_itda(r: ProbeResult) -> str:
    it = r.itda
    if not it.get("enabled"):
        return "<p>ITDA was turned off.</p>"
    pairs = [
        ("matching-pursuit steps k", it["k"]),
        ("error threshold δ", it["delta"]),
        ("atoms (share of instances)", f"{it['n_atoms']} ({100 * it['share_of_instances']:.1f}%)"),
        ("FVU", it["fvu"]),
        ("build time (s)", it["seconds"]),
    ]
    metric_key = next((k for k in it if k.startswith("valid_")), None)
    if metric_key:
        pairs.append(
            (f"{metric_key.replace('_at_', '@')} with ITDA reconstruction", it[metric_key])
        )
    rows = [[s["other"], s.get("n_atoms"), s["jaccard"], s.get("chance")] for s in it["similarity"]]
    return (
        "<p>A dictionary of real instances, added greedily when matching pursuit over the "
        "atoms so far explains them poorly. Two dictionaries built over the same instance "
        "stream are compared by the Jaccard index of their atom ids.</p>"
        + _kv(pairs)
        + (
            _table(
                ["compared with", "atoms", "Jaccard", "chance (random sets of these sizes)"], rows
            )
            if rows
            else "<p>Nothing to compare with (no other site of this kind; use --compare).</p>"
        )
    )


_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#222;
background:#fafafa;line-height:1.45}
header{background:#24364b;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.85;font-size:14px}
nav{background:#e9eef4;padding:8px 32px;font-size:14px}
nav a{margin-right:14px;color:#24364b;text-decoration:none}
main{max-width:1180px;margin:0 auto;padding:8px 32px 40px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:14px 20px;
margin:18px 0}
h2{font-size:18px;margin:4px 0 10px;color:#24364b}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #eee;padding:3px 10px;text-align:left}
thead th{background:#f3f5f8}
table.kv th{font-weight:normal;color:#555;width:280px}
table.wide{width:100%}
img{max-width:100%;display:block;margin:10px 0}
.small{font-size:12px;color:#555}
.good{color:#1b7c2f} .bad{color:#b3261e}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 12px;background:#fcfcfd;font-size:13px}
.card .concept{font-size:15px;font-weight:600;margin:4px 0;color:#24364b}
.card ol{margin:4px 0 4px 18px;padding:0}
.badge{font-size:11px;border:1px solid #aaa;border-radius:9px;padding:0 7px;margin-left:6px;
color:#666}
.badge.good{border-color:#1b7c2f;color:#1b7c2f}
.desc{font-style:italic;margin:2px 0}
.bar{display:flex;align-items:center;font-size:12px;margin:1px 0}
.bar .name{width:150px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar .track{flex:1;background:#eef1f5;height:9px;margin:0 6px;border-radius:3px}
.bar .fill{display:block;height:9px;background:#5b8bd0;border-radius:3px}
.bar .val{width:44px;text-align:right}
details{font-size:12px} pre{white-space:pre-wrap}
"""


def render_html(result: ProbeResult) -> str:
    """The complete, self-contained report page."""
    s = result.setup
    pngs = {
        "training": plot_training(result),
        "frequency": plot_frequency(result),
        "confidence": plot_confidence(result),
        "ablation": plot_ablation(result) if result.effects else None,
    }
    n_interp = len(result.interpretable())
    alive = result.summaries["sae"]["n_alive"]
    freq = np.asarray(result.frequencies["sae"])
    activations = (
        f"<p>{alive} of {len(freq)} latents fire at least once; the median live latent fires "
        f"on {100 * float(np.median(freq[freq > 0])) if (freq > 0).any() else 0:.2f}% of "
        f"instances (k/m = {100 * s['k'] / s['n_latents']:.2f}%).</p>"
        + _img(pngs["frequency"], "activation frequency")
    )
    bodies = {
        "setup": _section_setup(result),
        "quality": _section_quality(result),
        "training": _img(pngs["training"], "training curves"),
        "activations": activations,
        "concepts": _section_concepts(result),
        "baselines": _section_baselines(result, pngs["confidence"]),
        "ablation": _section_ablation(result, pngs["ablation"]),
        "latents": _section_cards(result),
        "itda": _section_itda(result),
        "notes": (
            "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in result.notes) + "</ul>"
            if result.notes
            else "<p>None.</p>"
        )
        + "<details><summary>probe configuration</summary><pre>"
        + html.escape(json.dumps(result.config.model_dump(mode="json"), indent=2))
        + "</pre></details>",
    }
    nav = "".join(f'<a href="#{sid}">{html.escape(title)}</a>' for sid, title in SECTIONS)
    sections = "".join(
        f'<section id="{sid}"><h2>{html.escape(title)}</h2>{bodies[sid]}</section>'
        for sid, title in SECTIONS
    )
    retention = result.quality.get("valid_retention")
    subtitle = (
        f"{n_interp} interpretable latents of {s['n_latents']}"
        + (
            f" · reconstruction keeps {100 * retention:.1f}% of validation "
            f"{result.quality['valid_metric'].replace('_at_', '@')}"
            if retention and math.isfinite(retention)  # NaN when the base metric is 0
            else ""
        )
        + f" · generated {datetime.now().strftime('%Y-%m-%d %H:%M')}"
    )
    title = f"Probe report: {s['model']} on {s['dataset']}, site {s['site']}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{sections}</main></body></html>\n"
    )


def write_report(result: ProbeResult, folder: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into ``folder`` (atomically); return both."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "report.json"
    html_path = folder / "report.html"
    atomic_write_text(json_path, dumps_json(result.to_json(), indent=1) + "\n")
    atomic_write_text(html_path, render_html(result))
    return html_path, json_path
