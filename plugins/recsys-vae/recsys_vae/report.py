"""The collapse report of a VAE run: ``collapse.json``, ``collapse.png``, ``collapse_report.html``.

The page is self-contained (the PNG is embedded as base64, as in ``recsys.probe.report``). Its
plots: per epoch, the KL term (nats per user), active units and :math:`\\beta`; for the final
model, the per-dimension KL and the variance of the posterior means, sorted, with the active
threshold; for an ARD prior also the prior variances and the usage ratio.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from recsys.jsonio import dumps_json
from recsys.train.checkpoint import atomic_write_text
from recsys_vae.diagnostics import CollapseStats

__all__ = ["draw_collapse_png", "write_collapse_report"]


def draw_collapse_png(
    history: list[dict[str, float]], stats: CollapseStats, threshold: float = 0.01
) -> bytes:
    """The report's figure as PNG bytes (matplotlib's Agg canvas, no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    rows = [h for h in history if "kl_total" in h]
    epochs = [h["epoch"] for h in rows]

    ax = fig.add_subplot(1, 3, 1)
    if rows:
        ax.plot(epochs, [h["kl_total"] for h in rows], color="#1f77b4", label="KL (nats/user)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("KL", color="#1f77b4")
        twin = ax.twinx()
        twin.plot(epochs, [h["active_units"] for h in rows], color="#d62728", label="active")
        if "relevant_dims" in rows[0]:
            twin.plot(epochs, [h["relevant_dims"] for h in rows], "--", color="#2ca02c")
        twin.set_ylabel("active units (red), relevant (green)")
    ax.set_title("per epoch")

    order = np.argsort(-stats.kl_per_dim, kind="stable")
    ax = fig.add_subplot(1, 3, 2)
    ax.bar(np.arange(stats.latent_dim), stats.kl_per_dim[order], color="#1f77b4", width=1.0)
    ax.set_xlabel("latent dimension (sorted)")
    ax.set_ylabel("mean KL per user")
    ax.set_title(f"KL per dimension (total {stats.kl_total:.2f})")

    ax = fig.add_subplot(1, 3, 3)
    var = np.sort(stats.mean_variance)[::-1]
    ax.semilogy(np.arange(stats.latent_dim), np.maximum(var, 1e-12), ".", label="Var(mu)")
    if not np.allclose(stats.prior_var, 1.0):
        ax.semilogy(
            np.arange(stats.latent_dim),
            np.maximum(np.sort(stats.prior_var)[::-1], 1e-12),
            ".",
            label="prior variance",
        )
    ax.axhline(threshold, color="#d62728", lw=0.8, label=f"threshold {threshold:g}")
    ax.set_xlabel("latent dimension (sorted)")
    ax.set_title(f"{stats.active_units} of {stats.latent_dim} active")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_collapse_report(
    run_dir: Path,
    model_name: str,
    history: list[dict[str, float]],
    stats: CollapseStats,
    extra: dict[str, object] | None = None,
    threshold: float = 0.01,
) -> list[Path]:
    """Write the three files into ``run_dir`` (atomically) and return their paths."""
    run_dir = Path(run_dir)
    extra = dict(extra or {})
    payload = {"model": model_name, "final": stats.to_json(), **extra}
    payload["epochs"] = [
        {k: v for k, v in h.items() if not k.startswith("valid_")} for h in history
    ]
    json_path = run_dir / "collapse.json"
    atomic_write_text(json_path, dumps_json(payload, indent=1, default=float) + "\n")

    png = draw_collapse_png(history, stats, threshold)
    png_path = run_dir / "collapse.png"
    tmp = png_path.with_name(png_path.name + ".tmp")
    tmp.write_bytes(png)
    tmp.replace(png_path)

    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.4g}</td></tr>" for k, v in stats.scalars().items()
    )
    if "relevant_dims" in extra:
        dims = extra["relevant_dims"]
        cells += (
            f"<tr><th>relevant dimensions (ARD)</th><td>{len(dims)}: "
            f"{html.escape(str(dims))}</td></tr>"
        )
    b64 = base64.b64encode(png).decode("ascii")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(model_name)}: posterior collapse</title></head><body>"
        f"<h1>{html.escape(model_name)}: posterior-collapse diagnostics</h1>"
        f"<p>Final model, {stats.n_users} training users, latent dimension "
        f"{stats.latent_dim}. Active: Var<sub>u</sub>(&mu;<sub>l</sub>) &gt; {threshold:g} "
        "(Burda et al. 2016); collapsed_dims_eps: (&epsilon;,&delta;)-collapse (Lucas et al. "
        "2019); au_fraction_dang as in Dang et al. (ICLR 2024).</p>"
        f"<table>{cells}</table>"
        f'<img src="data:image/png;base64,{b64}" alt="collapse diagnostics">'
        "</body></html>\n"
    )
    html_path = run_dir / "collapse_report.html"
    atomic_write_text(html_path, page)
    return [html_path, png_path, json_path]
