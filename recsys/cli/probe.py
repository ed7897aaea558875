"""``recsys probe``: sparse-autoencoder probes of a trained model and the probe report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from recsys.cli.options import output_dir_option, quiet_option, set_option, tracking_options
from recsys.jsonio import dumps_json

if TYPE_CHECKING:
    from recsys.probe.pipeline import ProbeResult


@click.command()
@click.argument("run", metavar="RUN_OR_CHECKPOINT", type=click.Path(path_type=Path))
@click.option(
    "--site",
    default="user",
    show_default=True,
    help="Representation to probe: user, item, or a named one of the model (e.g. user_layer0).",
)
@click.option(
    "-k", "--k", "k", type=click.IntRange(min=1), help="Active latents per instance (default 16)."
)
@click.option(
    "-x",
    "--expansion",
    type=click.IntRange(min=1),
    help="Latents per input dimension (default 4).",
)
@click.option("--epochs", type=click.IntRange(min=0), help="Maximum SAE epochs (default 50).")
@click.option("--batch-size", type=click.IntRange(min=2), help="SAE mini-batch size (default 32).")
@click.option(
    "--lr",
    "learning_rate",
    type=click.FloatRange(min=0, min_open=True),
    help="SAE learning rate of Adam (default 0.003).",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    help="Seed of the SAE, the held-out split, the controls and ITDA (default 0).",
)
@click.option(
    "--compare",
    type=click.Path(path_type=Path),
    help="A second run on the same users: ITDA Jaccard similarity of the two models.",
)
@click.option(
    "--labeller",
    metavar="MODULE:NAME",
    help="External labeller (e.g. an LLM wrapper) for latent descriptions; off by default.",
)
@click.option("--no-itda", is_flag=True, help="Skip the ITDA dictionary.")
@click.option("--no-baselines", is_flag=True, help="Skip the untrained-SAE and neuron baselines.")
@set_option("Set any probe config key, e.g. --set concepts.top_n=20 (repeatable).")
@output_dir_option("Report folder (default: RUN/probes/<site>-<time>).", file_okay=False)
@tracking_options("MLflow tracking URI (default: the training run's store).")
@click.option(
    "--experiment",
    help="MLflow experiment (default: the training run's, where the probe is a child run of "
    "it; another experiment gets a run of its own, tagged training_run_id).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@quiet_option()
def probe(
    run: Path,
    site: str,
    k: int | None,
    expansion: int | None,
    epochs: int | None,
    batch_size: int | None,
    learning_rate: float | None,
    seed: int | None,
    compare: Path | None,
    labeller: str | None,
    no_itda: bool,
    no_baselines: bool,
    overrides: tuple[str, ...],
    output_dir: Path | None,
    tracking_uri: str | None,
    experiment: str | None,
    no_tracking: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train a TopK sparse autoencoder on a trained model's representation and report what
    its latents mean (concepts with held-out confidence), what ablating them does, and how
    the model compares with baselines and other models.

    RUN_OR_CHECKPOINT is a run folder of `recsys train` or a checkpoint inside it.
    Writes report.html, report.json and sae.pt, and logs them to MLflow.
    """
    from recsys.config import apply_overrides, validate
    from recsys.probe.pipeline import ProbeConfig
    from recsys.probe.runs import probe_run

    values: dict = {"site": site}
    sections = {
        ("sae", "k"): k,
        ("sae", "expansion"): expansion,
        ("train", "epochs"): epochs,
        ("train", "batch_size"): batch_size,
        ("train", "learning_rate"): learning_rate,
    }
    for (section, key), value in sections.items():
        if value is not None:
            values.setdefault(section, {})[key] = value
    if quiet:
        values.setdefault("train", {})["progress"] = False
    if labeller:
        values["labeller"] = labeller
    if no_itda:
        values["itda"] = {"enabled": False}
    if no_baselines:
        values["baselines"] = False
    config = validate(ProbeConfig, apply_overrides(values, list(overrides)), prefix="probe")
    if seed is not None:
        config = config.with_seed(seed)
    result, folder = probe_run(
        run,
        config,
        output_dir=output_dir,
        compare=compare,
        tracking=not no_tracking,
        tracking_uri=tracking_uri,
        experiment=experiment,
    )
    summary = _summary(result, folder)
    if as_json:
        click.echo(dumps_json(summary, indent=2))
        return
    for key, value in summary.items():
        for line in value if key == "warnings" else [value]:
            click.echo(f"{'warning' if key == 'warnings' else key:<34} {line}")


def _summary(result: ProbeResult, folder: Path) -> dict:
    from recsys.jsonio import plain

    q, s, a = result.quality, result.summaries["sae"], result.ablation
    out = {
        "site": result.setup["site"],
        "latents": result.setup["n_latents"],
        "fvu": round(q["fvu"], 4),
        "dead_fraction": round(q["dead_fraction"], 4),
        "interpretable": s["n_interpretable"],
    }
    for name in ("untrained", "neurons"):
        if name in result.summaries:
            out[f"interpretable ({name})"] = result.summaries[name]["n_interpretable"]
    # RecSAE's coherence beside the counts, which alone can favour the untrained SAE
    out["coherence"] = round(s["coherence"], 4)
    for name in ("untrained", "neurons"):
        if name in result.summaries:
            out[f"coherence ({name})"] = round(result.summaries[name]["coherence"], 4)
    out["coherence (chance)"] = round(q["coherence_chance"], 4)
    if "valid_retention" in q:
        out[f"valid {q['valid_metric']} base"] = round(q["valid_base"][q["valid_metric"]], 4)
        out[f"valid {q['valid_metric']} with SAE"] = round(q["valid_sae"][q["valid_metric"]], 4)
        out["retention"] = round(q["valid_retention"], 4)
    if a.get("n_ablated"):
        out["ablation drop (concept)"] = round(a["mean_drop"], 4)
        out["ablation drop (random latent)"] = round(a["mean_random_latent_drop"], 4)
    if result.itda.get("enabled"):
        out["itda atoms"] = result.itda["n_atoms"]
        for sim in result.itda["similarity"]:
            if sim.get("compare"):
                out["itda jaccard (compared model)"] = round(sim["jaccard"], 4)
    if result.warnings:
        # the SAE the analysis rests on is untrained or worse than the mean (also logged)
        out["warnings"] = list(result.warnings)
    out["report"] = str(folder / "report.html")
    return plain(out)
