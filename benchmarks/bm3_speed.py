"""Seconds per training epoch: BM3 against LightGCN with the same layers on the same data.

An epoch is one pass of each model's own sampler (LightGCN: BPR triplets with a uniform
negative; BM3: positive pairs only) with Adam, batch 2048; no evaluation. The models train in
turn, one epoch each, for ``--epochs`` rounds after a warm-up round, so a machine that gets
busier or quieter affects them alike; the table gives the median epoch and the ratio of medians.
BM3 rows: every modality of the data, none (ID-only), and the same with frozen raw features
(``train_features=false``). A floor row times the least work BM3's modalities need per step,
each projector over the batch's distinct items, forward and backward (with the trainable
feature tables' gradients) and Adam on those parameters, and nothing else (no graph,
predictor, dropout or loss); "room" is what a 1.5x budget leaves the modalities:
1.5 x LightGCN minus ID-only BM3. A floor above the room means no implementation of the
full model meets 1.5x on that data.

Data: MovieLens-100k (modalities ``text`` 384-d when ``recsys[text]`` is installed, and
``genre`` 19-d) and the planted dataset of ``bm3_synthetic`` (``text`` 64-d, ``image`` 32-d,
``genre`` 16-d), plus a larger planted dataset (10k users x 5k items x 200k interactions).

With ``--device cuda`` the models, their buffers and every batch live on the GPU, and each
epoch's time ends with ``torch.cuda.synchronize()``; results go to ``bm3_speed_cuda``.

    python -m benchmarks.bm3_speed [--epochs 5] [--threads 1] [--layers 1 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import write_result
from recsys.data.catalog import DataConfig, load_dataset
from recsys.data.dataset import Dataset
from recsys.data.samplers import make_sampler
from recsys.data.split import split_ratio
from recsys.data.synthetic import make_synthetic
from recsys.models.registry import create_model
from recsys.train.trainer import TrainConfig, make_optimizer, train_step


class ModalityFloor(torch.nn.Module):
    """The modality work of a BM3 step with nothing else: every projector over the batch's
    distinct items (as :meth:`recsys.models.bm3.BM3.loss` does), summed, so backward fills
    each projector's and each trainable feature table's gradient."""

    def __init__(self, modalities: torch.nn.ModuleDict) -> None:
        super().__init__()
        self.modalities = modalities

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        items = torch.unique(batch["item"])
        return {"floor": sum(branch(items).sum() for branch in self.modalities.values())}


def datasets() -> dict[str, Dataset]:
    return {
        "ml-100k": load_dataset(DataConfig()),
        "synthetic-2000x1000x20000": make_synthetic(2000, 1000, 20000, min_per_user=3, seed=0),
        "synthetic-10000x5000x200000": make_synthetic(10000, 5000, 200000, seed=0),
    }


def variants(layers: int) -> dict[str, tuple[str, dict]]:
    return {
        "lightgcn": ("lightgcn", {"n_layers": layers}),
        "bm3": ("bm3", {"n_layers": layers}),
        "bm3_frozen_features": ("bm3", {"n_layers": layers, "train_features": False}),
        "bm3_no_modalities": ("bm3", {"n_layers": layers, "modalities": []}),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epochs(ds: Dataset, layers: int, epochs: int, device: torch.device) -> dict:
    split = split_ratio(ds, (0.8, 0.1, 0.1), seed=0)
    rng = np.random.default_rng(0)
    runs = {}
    for key, (name, params) in variants(layers).items():
        torch.manual_seed(0)
        model = create_model(name, **params).setup(split.train, ds).to(device)
        model.train()
        optimizer = make_optimizer(model, TrainConfig())
        sampler = make_sampler(model.batch_kind, split.train, 2048)
        runs[key] = (model, optimizer, sampler)
    # its own BM3 instance: the tables are the same sizes, but the timed BM3 keeps its own
    floor = ModalityFloor(create_model("bm3", n_layers=layers).setup(split.train, ds).modalities)
    floor = floor.to(device)
    adam = torch.optim.Adam(floor.parameters(), lr=TrainConfig().learning_rate, fused=True)
    runs["modality_floor"] = (floor, adam, make_sampler("pairs", split.train, 2048))
    times: dict[str, list[float]] = {key: [] for key in runs}
    for round_ in range(epochs + 1):
        for key, (model, optimizer, sampler) in runs.items():
            _sync(device)
            tic = time.perf_counter()
            for batch in sampler.epoch(rng):
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                train_step(model, optimizer, batch)
            _sync(device)
            if round_ > 0:  # the first round warms up allocators and caches
                times[key].append(time.perf_counter() - tic)
    base = float(np.median(times["lightgcn"]))
    out: dict = {"room_under_1_5x_s": 1.5 * base - float(np.median(times["bm3_no_modalities"]))}
    for key, values in times.items():
        model = runs[key][0]
        out[key] = {
            "median_s": float(np.median(values)),
            "min_s": float(np.min(values)),
            "ratio_to_lightgcn": float(np.median(values)) / base,
            "modalities": getattr(model, "modality_names", []),
        }
    return out


def run(epochs: int, threads: int, layers: list[int], device: str = "cpu") -> dict:
    torch.set_num_threads(threads)
    where = torch.device(device)
    out: dict = {
        "protocol": __doc__.split("\n\n")[1:4],
        "threads": threads,
        "device": str(where),
        "gpu": torch.cuda.get_device_name(where) if where.type == "cuda" else None,
        "results": {},
    }
    for name, ds in datasets().items():
        for n_layers in layers:
            res = time_epochs(ds, n_layers, epochs, where)
            out["results"][f"{name} L={n_layers}"] = res
            print(
                name,
                f"L={n_layers}",
                {
                    k: round(v["ratio_to_lightgcn"], 2)
                    for k, v in res.items()
                    if isinstance(v, dict)
                },
                flush=True,
            )
    return out


def markdown(result: dict) -> str:
    lines = [
        "# BM3 epoch cost relative to LightGCN (same layers, same data)",
        "",
        *result["protocol"],
        "",
        f"torch threads: {result['threads']}; device: {result.get('device', 'cpu')}"
        + (f" ({result['gpu']})" if result.get("gpu") else ""),
        "",
        "| data, layers | LightGCN s/epoch | BM3 (modalities) | BM3 frozen features | "
        "BM3 no modalities | modality floor | room under 1.5x |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, res in result["results"].items():
        mods = ", ".join(res["bm3"]["modalities"]) or "none"

        def cell(name: str, res: dict = res) -> str:
            r = res[name]
            return f"{r['median_s']:.3f} s ({r['ratio_to_lightgcn']:.2f}x)"

        floor = f"{res['modality_floor']['median_s']:.3f} s" if "modality_floor" in res else "-"
        room = f"{res['room_under_1_5x_s']:.3f} s" if "room_under_1_5x_s" in res else "-"
        lines.append(
            f"| {key} | {res['lightgcn']['median_s']:.3f} | {cell('bm3')} [{mods}] | "
            f"{cell('bm3_frozen_features')} | {cell('bm3_no_modalities')} | {floor} | {room} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    args = parser.parse_args()
    result = run(args.epochs, args.threads, args.layers, args.device)
    name = "bm3_speed" if args.device == "cpu" else "bm3_speed_cuda"
    path = write_result(name, result, markdown(result))
    print(path.read_text())


if __name__ == "__main__":
    main()
