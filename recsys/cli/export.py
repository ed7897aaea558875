"""``recsys export``: a run's user and item embeddings as ``.npy`` files, for an ANN index.

Writes into ``--out``::

    item_embeddings.npy   float32 [n_items, d]   the model's ``item`` representation
    user_embeddings.npy   float32 [n_users, d]   the model's ``user`` representation
    items.csv             index,id               row k of item_embeddings.npy is item ``id``
    users.csv             index,id
    export.json           model, run folder, shapes, and how a score is formed

For a model that scores by a dot product of its ``user`` and ``item`` representations (BPR,
LightGCN, BM3, the two-tower model, whose vectors are L2-normalised so the dot product is the
cosine) the top-k of ``user_embeddings[u] @ item_embeddings.T`` are the model's
recommendations before excluding seen items, so the item file can go straight into a
maximum-inner-product index.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import click
import numpy as np
import pandas as pd


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file and a rename, so a crash leaves no half file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_embeddings(run_dir: Path, out: Path, device: str | None = None) -> dict[str, object]:
    """Write the run's user and item embeddings and their id maps into ``out``.

    Returns the ``export.json`` summary.

    Raises:
        click.ClickException: the model has no ``user`` and ``item`` representations.
    """
    import torch

    from recsys.experiment import load_run
    from recsys.train.checkpoint import atomic_write_text

    cfg, dataset, _split, model = load_run(run_dir, device)
    with torch.no_grad():
        reps = model.representations()
    missing = [k for k in ("user", "item") if k not in reps]
    if missing:
        raise click.ClickException(
            f"model {model.name!r} has no {' or '.join(missing)} representation to export "
            f"(it has: {', '.join(reps) or 'none'})"
        )
    users = reps["user"].detach().float().cpu().numpy()
    items = reps["item"].detach().float().cpu().numpy()
    if users.shape[0] != dataset.n_users or items.shape[0] != dataset.n_items:
        raise click.ClickException(
            f"model {model.name!r}: representations have {users.shape[0]} users and "
            f"{items.shape[0]} items; the dataset has {dataset.n_users} and {dataset.n_items}"
        )
    out.mkdir(parents=True, exist_ok=True)
    _save_npy(out / "item_embeddings.npy", items)
    _save_npy(out / "user_embeddings.npy", users)
    for name, vocab in (("items.csv", dataset.items), ("users.csv", dataset.users)):
        frame = pd.DataFrame({"index": np.arange(len(vocab)), "id": vocab.ids})
        atomic_write_text(out / name, frame.to_csv(index=False))
    summary: dict[str, object] = {
        "run_dir": str(Path(run_dir).resolve()),
        "model": cfg.model["name"],
        "dataset": dataset.name,
        "item_embeddings": list(items.shape),
        "user_embeddings": list(users.shape),
        "score": "user_embeddings @ item_embeddings.T",
    }
    atomic_write_text(out / "export.json", json.dumps(summary, indent=2) + "\n")
    return summary


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for item_embeddings.npy, user_embeddings.npy, items.csv, users.csv.",
)
@click.option("--device", help="cpu, cuda or cuda:N (default: the run's train.device).")
def export(run_dir: Path, out: Path, device: str | None) -> None:
    """Export a run's user and item embeddings (.npy) with their id maps (CSV)."""
    summary = export_embeddings(run_dir, out, device)
    click.echo(
        f"wrote {summary['item_embeddings'][0]} item and {summary['user_embeddings'][0]} user "
        f"embeddings (d={summary['item_embeddings'][1]}) to {out}"
    )
