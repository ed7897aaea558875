"""The Python API, without the CLI: dataset -> split -> model -> Trainer -> test -> top-k.

What `recsys train` does, step by step, for a notebook or a research script that needs to reach
inside (a custom callback, another split, the trained model itself). No run folder or MLflow
run is made; `recsys.experiment.train_run` adds those.

    python examples/api_quickstart.py [--dataset ml-100k] [--model lightgcn] [--epochs 50]
"""

from __future__ import annotations

import argparse

import pandas as pd

from recsys.data.catalog import DataConfig, load_dataset
from recsys.data.split import split_ratio
from recsys.eval.evaluator import Evaluator
from recsys.experiment import recommend
from recsys.models.registry import create_model
from recsys.train.trainer import EpochReport, TrainConfig, Trainer


def run(dataset_name: str, model_name: str, epochs: int) -> tuple[dict[str, float], pd.DataFrame]:
    """Train ``model_name`` on ``dataset_name``; return its test metrics and top-5 lists."""
    # a card name (`recsys data list`), a synthetic-UxIxN name, or DataConfig(path=...) for files
    dataset = load_dataset(DataConfig(name=dataset_name))
    split = split_ratio(dataset, (0.8, 0.1, 0.1), seed=2020)  # RecBole's RO 8:1:1, per user
    model = create_model(model_name)  # the model's typed defaults; keywords override them

    def show(report: EpochReport) -> None:  # called after every epoch
        if report.valid is not None and report.epoch % 10 == 0:
            print(f"epoch {report.epoch}: valid recall@20 {report.valid['recall_at_20']:.4f}")

    trainer = Trainer(
        model,
        split,
        TrainConfig(epochs=epochs, valid_metric="recall_at_20", patience=10, progress=False),
        Evaluator(topk=(10, 20)),
        callbacks=[show],
        dataset=dataset,  # models with item features (bm3, twotower) read them from here
    )
    fit = trainer.fit()  # early stopping on validation; the model is left at its best epoch
    print(f"best epoch {fit.best_epoch} of {fit.epochs_run}")
    test = trainer.evaluate("test")  # once, at the best epoch
    top = recommend(model, dataset, split, trainer.evaluator, k=5, users=None)
    return test, top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--model", default="lightgcn")
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args()
    test, top = run(args.dataset, args.model, args.epochs)
    print({k: round(v, 4) for k, v in test.items() if k.startswith(("recall", "ndcg"))})
    print(top.head(10).to_string(index=False))


if __name__ == "__main__":
    main()
