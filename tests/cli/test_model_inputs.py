"""A run refuses data that gives its model other inputs than it was trained with.

``run.json`` records the set-up model's :meth:`~recsys.models.base.Recommender.input_fingerprint`
(``model_inputs``: a sha256 per non-persistent buffer, such as two-tower's feature codes and
values). ``evaluate``, ``recommend``, ``export``, ``probe`` and ``train --resume`` refuse a run
whose item features changed since (before: a renamed brand shifted every later brand's code,
and the run silently scored each item with another brand's trained embedding).
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from recsys.cli import main
from recsys.data.split import split_ratio
from recsys.data.synthetic import make_synthetic
from recsys.models.registry import create_model
from tests.cli.reopen_commands import refusals, snapshot

FAST = ["--no-tracking", "--quiet", "--set", "train.num_threads=1"]
FEATURES = ["--set", "model.item_features=[price,brand]", "--set", "model.embedding_size=8"]
BRANDS = ["Alpha", "Binky", "Cuddle", "Dino"]


def _write_data(folder: Path, rename: str | None = None, price_of_1: float | None = None) -> Path:
    """``shop.inter`` (30 users x 10 of 40 items) and ``shop.item`` (a price and a brand
    per item); brand ``Binky`` optionally renamed (the same vocabulary size, other codes),
    item 1's price optionally edited."""
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(1, 31):
        for j in range(10):
            inter.append(f"{u}\t{(u * 7 + j * 3) % 40 + 1}\t1.0\t{u * 100 + j}")
    item = ["item_id:token\tprice:float\tbrand:token"]
    for i in range(1, 41):
        brand = BRANDS[i % 4]
        brand = rename if brand == "Binky" and rename else brand
        price = price_of_1 if i == 1 and price_of_1 is not None else float(i % 7)
        item.append(f"{i}\t{price}\t{brand}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shop.inter").write_text("\n".join(inter) + "\n")
    (folder / "shop.item").write_text("\n".join(item) + "\n")
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A one-epoch two-tower run on ``shop`` (price and brand features); its folder and data."""
    root = tmp_path_factory.mktemp("inputs")
    data = _write_data(root / "shop")
    args = ["train", "-m", "twotower", "--data-path", str(data), "-o", str(root / "runs")]
    assert main([*args, *FAST, *FEATURES, "--set", "train.epochs=1", "--set", "run_name=tt"]) == 0
    return root / "runs" / "tt", data


@pytest.fixture
def data(trained):
    yield trained[1]
    _write_data(trained[1])


def test_run_json_records_the_model_inputs(trained):
    record = json.loads((trained[0] / "run.json").read_text())
    inputs = record["model_inputs"]
    assert "item_encoders.brand.codes" in inputs and "item_encoders.price.values" in inputs
    # a sha256 of the bytes; a float table's is followed by its sketch (same_input)
    assert all(len(digest.split(" ~ ")[0]) == 64 for digest in inputs.values())
    assert " ~ " in inputs["item_encoders.price.values"]
    assert " ~ " not in inputs["item_encoders.brand.codes"]


@pytest.mark.parametrize(
    ("change", "which"),
    [({"rename": "Zulu"}, "item_encoders.brand.codes"), ({"price_of_1": 99.0}, "price.values")],
    ids=["renamed-brand", "edited-price"],
)
def test_a_run_whose_item_features_changed_is_refused(
    trained, data, tmp_path, capsys, change, which
):
    run, _ = trained
    before = snapshot(run)
    _write_data(data, **change)  # the same ids and vocabulary sizes
    out = tmp_path / "out"
    # before: exit 0, every item scored with other feature rows
    for err in refusals(run, out, capsys):
        assert f"{run}: the model's inputs derived from the data (item features) changed" in err
        assert which in err, err
    assert not out.exists()
    assert snapshot(run) == before
    _write_data(data)  # the data it was trained on: used again
    assert main(["recommend", str(run), "-u", "2", "-k", "3"]) == 0
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 3


def test_a_run_from_before_the_input_fingerprint_is_still_used(trained, data, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(trained[0], old)
    record = json.loads((old / "run.json").read_text())
    del record["model_inputs"]
    (old / "run.json").write_text(json.dumps(record))
    _write_data(data, rename="Zulu")
    assert main(["recommend", str(old), "-u", "2", "-k", "3"]) == 0
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 3


def test_resume_refuses_changed_item_features_before_writing_to_the_folder(
    tmp_path, monkeypatch, capsys
):
    from recsys.tracking import NullTracker

    def log_metrics(self, metrics, step=None):
        if step == 0:
            raise KeyboardInterrupt

    data = _write_data(tmp_path / "shop")
    args = ["train", "-m", "twotower", "--data-path", str(data), "-o", str(tmp_path / "runs")]
    with monkeypatch.context() as patch:
        patch.setattr(NullTracker, "log_metrics", log_metrics)
        code = main([*args, *FAST, *FEATURES, "--set", "train.epochs=2", "--set", "run_name=r"])
    assert code == 130
    run = tmp_path / "runs" / "r"
    before = snapshot(run)
    assert "model_inputs" in json.loads((run / "run.json").read_text())
    capsys.readouterr()
    _write_data(data, rename="Zulu")
    # before: trained on, each item's brand embedding now another brand's
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the model's inputs derived from the data (item features) changed" in err, err
    assert "item_encoders.brand.codes" in err and "Traceback" not in err
    assert snapshot(run) == before  # train.log and run.json included
    _write_data(data)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and "item_encoders.brand.codes" in record["model_inputs"]


@pytest.mark.parametrize(
    "name", ["bpr", "lightgcn", "bm3", "twotower", "itemknn", "multvae", "dnis"]
)
def test_the_input_fingerprint_depends_only_on_the_data(name, caplog):
    """Two set-ups under other torch seeds give the same fingerprint (else a loaded run
    would be refused); the feature models fingerprint their feature tables."""
    dataset = make_synthetic(60, 40, 600, seed=3)
    split = split_ratio(dataset, (0.8, 0.1, 0.1), seed=1)
    prints = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        with caplog.at_level(logging.ERROR):
            prints.append(create_model(name).setup(split.train, dataset).input_fingerprint())
    assert prints[0] == prints[1]
    if name in ("bm3", "twotower"):
        assert any(k.endswith((".raw", ".values")) and "text" in k for k in prints[0]), prints[0]


def test_floats_that_differ_only_in_their_last_bits_are_the_same_input():
    """Text re-encoded on another machine differs in the last bits of its floats: not a
    changed input; an edited value, a replaced or reordered table is."""
    import torch

    from recsys.models.base import _float_sketch, same_input

    def fingerprint(x: torch.Tensor) -> str:
        return "sha-of-bytes ~ " + " ".join(f"{v:.9e}" for v in _float_sketch(x))

    gen = torch.Generator().manual_seed(0)
    table = torch.randn(1682, 384, generator=gen)
    noisy = table * (1 + 1e-7 * torch.randn(table.shape, generator=gen))
    assert same_input(fingerprint(table), fingerprint(noisy).replace("sha-of", "other"))
    edited = table.clone()
    edited[5] += 1.0  # one item's row re-encoded from another text
    assert not same_input(fingerprint(table), fingerprint(edited))
    assert not same_input(fingerprint(table), fingerprint(table[torch.randperm(1682)]))
    # two rows swapped in a wide table (the tolerance does not grow with the table's size)
    wide = torch.randn(3000, 1024, generator=gen)
    for a, b in ((0, 1), (10, 2999), (1234, 1235)):
        swapped = wide.clone()
        swapped[[a, b]] = wide[[b, a]]
        assert not same_input(fingerprint(wide), fingerprint(swapped)), (a, b)
    assert same_input(fingerprint(wide), fingerprint(wide * (1 + 1e-7)))
    # digests without a sketch (integer codes) must match exactly
    assert not same_input("abc", "abd") and same_input("abc", "abc")


def test_training_aids_computed_through_clustering_are_not_fingerprinted():
    """CFM's groups (k-means over the features) and ProtoDenoise's anchors (an SVD and a
    threshold) could flip on other hardware by a last bit; scoring never reads them, and the
    features they come from are fingerprinted."""
    from recsys.data.split import split_ratio
    from recsys.data.synthetic import make_synthetic
    from recsys.models.registry import create_model

    ds = make_synthetic(200, 80, 3000, seed=0)
    split = split_ratio(ds, (0.8, 0.1, 0.1), seed=0)
    tower = create_model("twotower", ssl="cfm").setup(split.train, ds)
    assert hasattr(tower, "cfm_table")
    inputs = tower.input_fingerprint()
    assert "cfm_table" not in inputs and "feature_mi" not in inputs
    assert "item_encoders.text.values" in inputs
    proto = create_model("protodenoise").setup(split.train, ds)
    assert hasattr(proto, "anchor") and "anchor" not in proto.input_fingerprint()
    # and when a wrapper holds the model: DNIS around the two-tower
    dnis = create_model("dnis", base="twotower", base_params={"ssl": "cfm"})
    inputs = dnis.setup(split.train, ds).input_fingerprint()
    assert not any(k.endswith(("cfm_table", "feature_mi")) for k in inputs)
    assert any(k.endswith("item_encoders.text.values") for k in inputs)
