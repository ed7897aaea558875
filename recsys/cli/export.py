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
maximum-inner-product index. That is checked on the first users' scores before anything is
written: a model that scores otherwise, or whose vectors are not finite, is refused. An
existing export in ``--out`` is kept unless ``--overwrite`` is given; the five files are then
replaced together, so a failure never leaves a mix of two exports.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np
import pandas as pd

from recsys.errors import ConfigError, DataError
from recsys.fileio import atomic_write_files
from recsys.jsonio import dumps_json

if TYPE_CHECKING:
    import scipy.sparse as sp

    from recsys.models.base import Recommender


FILES = ("item_embeddings.npy", "user_embeddings.npy", "items.csv", "users.csv", "export.json")
"""What an export writes into its folder."""

_CHECK_USERS = 256  # users whose scores the exported vectors must reproduce


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _write_all(out: Path, files: dict[str, bytes]) -> None:
    """Write every file to a temporary name first and rename them only once all are written,
    so a failure (a full disk) leaves a previous export whole instead of half replaced."""
    atomic_write_files({out / name: data for name, data in files.items()}, suffix=".part")


def _finite(array: np.ndarray, what: str, run_dir: Path) -> None:
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise DataError(
            f"{run_dir}: the model's {what} embeddings have NaN or infinite values "
            f"({int(bad.sum())} rows, the first row {int(np.flatnonzero(bad)[0])}); the run "
            "diverged, so its vectors would poison an index"
        )


def _check_dot_product(
    model: Recommender, users: np.ndarray, items: np.ndarray, history: sp.csr_array | None
) -> None:
    r"""The export promises :math:`\hat{y}_{ui} = \mathbf{u}_u^\top\mathbf{v}_i`: check it
    on the first users' scores (from ``history``, as the vectors were), so a model that scores
    otherwise (an MLP over the pair, a fold-in from history) is refused rather than exported
    into a wrong index."""
    import torch

    n = min(_CHECK_USERS, users.shape[0])
    with torch.no_grad():
        scores = model.score(torch.arange(n), history).detach().float().cpu().numpy()
    product = users[:n] @ items.T
    scale = 1.0 + float(np.abs(scores).max(initial=0.0))
    if scores.shape != product.shape or not np.allclose(product, scores, rtol=0, atol=1e-4 * scale):
        raise ConfigError(
            f"model {model.name!r} does not score by the dot product of its user and item "
            "representations, so exported vectors would not reproduce its recommendations "
            "(export needs a dot-product model: bpr, lightgcn, bm3, twotower, dnis, ...)"
        )


def export_embeddings(
    run_dir: Path, out: Path, device: str | None = None, overwrite: bool = False
) -> dict[str, object]:
    """Write the run's user and item embeddings and their id maps into ``out``.

    Returns the ``export.json`` summary. The five files are replaced together or not at all.

    Raises:
        ConfigError: ``out`` already holds an export and ``overwrite`` is false; the model has
            no ``user`` and ``item`` representations, or does not score by their dot product.
        DataError: the embeddings have NaN or infinite values; the run failed, or its data
            changed since it was trained (:func:`recsys.experiment.load_run`).
    """
    from recsys.experiment import check_run_finished, load_run
    from recsys.probe.collect import collect_representations

    out = Path(out)
    existing = [name for name in FILES if (out / name).exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{out} already holds {', '.join(existing)}; pass --overwrite to replace them, "
            "or export into another folder"
        )
    check_run_finished(run_dir)  # a failed run is refused, as evaluate and recommend do
    cfg, dataset, split, model = load_run(run_dir, device)
    # held-out users (a fold-in model's heldout_users split) are encoded from their fold-in
    # rows, as the run scored them; their training rows are empty
    history = split.scoring_history(model.fold_in)
    reps = collect_representations(model, history)
    missing = [k for k in ("user", "item") if k not in reps]
    if missing:
        raise ConfigError(
            f"model {model.name!r} has no {' or '.join(missing)} representation to export "
            f"(it has: {', '.join(reps) or 'none'})"
        )
    users = reps["user"].detach().float().cpu().numpy()
    items = reps["item"].detach().float().cpu().numpy()
    if users.shape[0] != dataset.n_users or items.shape[0] != dataset.n_items:
        raise ConfigError(
            f"model {model.name!r}: representations have {users.shape[0]} users and "
            f"{items.shape[0]} items; the dataset has {dataset.n_users} and {dataset.n_items}"
        )
    _finite(users, "user", run_dir)
    _finite(items, "item", run_dir)
    _check_dot_product(model, users, items, history)
    summary: dict[str, object] = {
        "run_dir": str(Path(run_dir).resolve()),
        "model": cfg.model["name"],
        "dataset": dataset.name,
        "item_embeddings": list(items.shape),
        "user_embeddings": list(users.shape),
        "score": "user_embeddings @ item_embeddings.T",
    }
    files = {"item_embeddings.npy": _npy_bytes(items), "user_embeddings.npy": _npy_bytes(users)}
    for name, vocab in (("items.csv", dataset.items), ("users.csv", dataset.users)):
        frame = pd.DataFrame({"index": np.arange(len(vocab)), "id": vocab.ids})
        files[name] = frame.to_csv(index=False).encode("utf-8")
    files["export.json"] = (dumps_json(summary, indent=2) + "\n").encode("utf-8")
    out.mkdir(parents=True, exist_ok=True)
    _write_all(out, files)
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
@click.option("--overwrite", is_flag=True, help="Replace an export already in --out.")
def export(run_dir: Path, out: Path, device: str | None, overwrite: bool) -> None:
    """Export a run's user and item embeddings (.npy) with their id maps (CSV)."""
    summary = export_embeddings(run_dir, out, device, overwrite=overwrite)
    click.echo(
        f"wrote {summary['item_embeddings'][0]} item and {summary['user_embeddings'][0]} user "
        f"embeddings (d={summary['item_embeddings'][1]}) to {out}"
    )
