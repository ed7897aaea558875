"""BM3: the method pinned down (views, shared predictor, scoring, loss terms), data, CLI."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recsys.cli import main
from recsys.data.dataset import Dataset
from recsys.data.samplers import make_sampler
from recsys.data.split import Split
from recsys.errors import ConfigError
from recsys.eval.evaluator import Evaluator
from recsys.models.bm3 import BM3, BM3Config, ModalityBranch, dropout_mask
from recsys.models.registry import create_model, get_model_class
from recsys.train.trainer import TrainConfig, Trainer

MODALITIES = ["text", "image", "genre"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models run fastest on one thread (and are not slowed by a busy second core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(split: Split, dataset: Dataset | None, seed: int = 0, **config: object) -> BM3:
    torch.manual_seed(seed)
    return BM3(**config).setup(split.train, dataset)


def _batch(split: Split, size: int = 64) -> dict[str, torch.Tensor]:
    sampler = make_sampler("pairs", split.train, size)
    return next(sampler.epoch(np.random.default_rng(0)))


def test_registered_with_the_paper_defaults() -> None:
    assert get_model_class("bm3") is BM3
    assert BM3.batch_kind == "pairs"  # positives only: no negative sampling
    cfg = BM3Config()
    assert (cfg.embedding_size, cfg.n_layers, cfg.dropout) == (64, 1, 0.5)
    assert (cfg.reg_weight, cfg.cl_weight, cfg.train_features) == (0.1, 2.0, True)
    assert cfg.modalities is None
    with pytest.raises(ConfigError, match=r"model\.dropout"):
        create_model("bm3", dropout=1.0)


def test_modalities_come_from_the_dataset(planted: Dataset, planted_split: Split) -> None:
    model = _model(planted_split, planted)
    assert model.modality_names == MODALITIES
    widths = {k: b.table.shape for k, b in model.modalities.items()}
    assert widths == {"text": (200, 64), "image": (200, 32), "genre": (200, 16)}
    only = _model(planted_split, planted, modalities=["image"])
    assert only.modality_names == ["image"]
    with pytest.raises(ConfigError, match=r"unknown modality 'audio'.*available: text, image"):
        _model(planted_split, planted, modalities=["audio"])


def test_without_modalities_it_is_the_id_only_form_and_says_so(
    planted: Dataset, planted_split: Split, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="recsys.models.bm3"):
        model = _model(planted_split, planted, modalities=[])
    assert model.modality_names == []
    assert "ID-only form" in caplog.text
    assert set(model.loss(_batch(planted_split))) == {"rec", "reg"}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recsys.models.bm3"):
        _model(planted_split, None)  # no dataset at all
    assert "ID-only form" in caplog.text
    with pytest.raises(ConfigError, match=r"need the dataset's item features"):
        _model(planted_split, None, modalities=["text"])


# ---------------------------------------------------------------------------------------------
# the method
# ---------------------------------------------------------------------------------------------


def test_target_view_is_dropout_of_the_online_representation_without_gradient(
    planted: Dataset, planted_split: Split
) -> None:
    model = _model(planted_split, planted, dropout=0.3)
    h = torch.randn(4000, 64, requires_grad=True)
    for mode in (model.train, model.eval):  # the augmentation is on in both modes
        mode()
        t = model.target(h)
        assert not t.requires_grad and t.grad_fn is None
        kept = t != 0
        assert abs(kept.float().mean().item() - 0.7) < 0.01
        assert torch.allclose(t[kept], h.detach()[kept] / 0.7)
    assert not torch.equal(model.target(h), model.target(h))  # a fresh mask each call
    torch.manual_seed(5)
    first = model.target(h)
    torch.manual_seed(5)
    assert torch.equal(first, model.target(h))  # reproducible from torch's seed
    assert torch.equal(_model(planted_split, planted, dropout=0.0).target(h), h.detach())


def test_dropout_mask_matches_its_rate() -> None:
    mask = dropout_mask(torch.empty(1000, 100), keep=0.5)
    assert set(torch.unique(mask).tolist()) == {0.0, 2.0}
    assert abs((mask > 0).float().mean().item() - 0.5) < 0.01


def test_one_predictor_is_shared_by_users_items_and_modalities(
    planted: Dataset, planted_split: Split
) -> None:
    model = _model(planted_split, planted)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    projectors = [f"modalities.{m}.projector" for m in sorted(MODALITIES)]
    assert sorted(linears) == [*projectors, "predictor"]
    assert model.predictor.in_features == model.predictor.out_features == 64
    seen: list[torch.Tensor] = []
    model.predictor.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach()))
    batch = _batch(planted_split, 32)
    model.loss(batch)
    rows = torch.cat(seen)
    # the batch's (distinct) users, items and each modality's latent all pass through it
    users_h, items_h = model.propagate()
    users, items = torch.unique(batch["user"]), torch.unique(batch["item"])
    expected = [users_h[users], items_h[items]]
    expected += [b(items) for b in model.modalities.values()]
    assert torch.allclose(rows, torch.cat(expected).detach(), atol=1e-6)


def test_loss_terms_are_the_papers(planted: Dataset, planted_split: Split) -> None:
    """With dropout 0 the targets are the online representations, so every term has a closed
    form to compare with."""
    model = _model(planted_split, planted, dropout=0.0, reg_weight=0.1, cl_weight=2.0)
    batch = _batch(planted_split)
    terms = model.loss(batch)
    assert set(terms) == {"rec", "reg"} | {
        f"{k}_{m}" for k in ("align", "mask") for m in MODALITIES
    }

    def c(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1 - F.cosine_similarity(a, b.detach(), dim=-1).mean()

    with torch.no_grad():
        users_h, items_h = model.propagate()
        h_u, h_i = users_h[batch["user"]], items_h[batch["item"]]
        p = model.predictor
        assert torch.allclose(terms["rec"], c(p(h_u), h_i) + c(p(h_i), h_u), atol=1e-5)
        for key, branch in model.modalities.items():
            h_m = branch(batch["item"])
            assert torch.allclose(terms[f"align_{key}"], 2.0 * c(p(h_m), h_i), atol=1e-5)
            assert torch.allclose(terms[f"mask_{key}"], 2.0 * c(p(h_m), h_m), atol=1e-5)
        # not squared, over every user and item, divided by the item count
        reg = (users_h.norm() + items_h.norm()) / planted_split.shape[1]
        assert torch.allclose(terms["reg"], 0.1 * reg, atol=1e-6)


def test_backbone_is_lightgcn_with_the_item_residual(
    planted: Dataset, planted_split: Split
) -> None:
    from recsys.models.lightgcn import normalized_adjacency

    model = _model(planted_split, planted, n_layers=2)
    adj = torch.from_numpy(normalized_adjacency(planted_split.train).toarray())
    e = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach()
    mean = (e + adj @ e + adj @ (adj @ e)) / 3
    users_h, items_h = model.propagate()
    n_users = planted_split.shape[0]
    assert torch.allclose(users_h, mean[:n_users], atol=1e-5)
    assert torch.allclose(items_h, mean[n_users:] + model.item_embedding.weight, atol=1e-5)


def _moved(param: torch.Tensor) -> bool:
    return param.grad is not None and bool(param.grad.abs().sum() > 0)


def test_gradients_stop_at_the_targets(planted: Dataset, planted_split: Split) -> None:
    model = _model(planted_split, planted)
    terms = model.loss(_batch(planted_split))
    terms["align_text"].backward()
    # the modality view is pulled towards the item target; the ID embeddings are not moved
    assert not _moved(model.item_embedding.weight)
    assert not _moved(model.user_embedding.weight)
    assert _moved(model.predictor.weight)
    text = model.modalities["text"]
    assert _moved(text.projector.weight) and _moved(text.table)
    assert not _moved(model.modalities["image"].projector.weight)
    model.zero_grad()
    terms = model.loss(_batch(planted_split))
    terms["mask_text"].backward()
    assert not _moved(model.item_embedding.weight) and _moved(text.projector.weight)
    model.zero_grad()
    terms = model.loss(_batch(planted_split))
    terms["rec"].backward()
    assert _moved(model.item_embedding.weight) and _moved(model.user_embedding.weight)
    assert not any(_moved(b.projector.weight) for b in model.modalities.values())


def test_scores_are_dot_products_of_predictor_outputs(
    planted: Dataset, planted_split: Split
) -> None:
    model = _model(planted_split, planted)
    users = torch.arange(10)
    with torch.no_grad():
        users_h, items_h = model.propagate()
        expected = model.predictor(users_h[users]) @ model.predictor(items_h).T
    model.eval()
    assert torch.allclose(model.score(users), expected, atol=1e-5)
    assert torch.equal(model.score(users), model.score(users))  # no dropout at scoring
    reps = model.representations()
    assert torch.allclose(model.scorer_from(reps)(users), expected, atol=1e-5)
    assert set(reps) == {"user", "item", "user_hidden", "item_hidden"} | {
        f"item_{m}" for m in MODALITIES
    }


def test_scores_ignore_modality_features(planted: Dataset, planted_split: Split) -> None:
    model = _model(planted_split, planted)
    users = torch.arange(20)
    before = model.score(users)
    with torch.no_grad():
        for branch in model.modalities.values():
            branch.table.normal_()
            branch.projector.weight.normal_()
    assert torch.equal(model.score(users), before)
    id_only = _model(planted_split, planted, modalities=[])
    id_only.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("modalities.")}
    )
    assert torch.allclose(id_only.score(users), before)


def test_raw_features_are_fine_tuned_and_reset(planted: Dataset, planted_split: Split) -> None:
    model = _model(planted_split, planted)
    text = model.modalities["text"]
    assert isinstance(text.table, nn.Parameter)
    raw = torch.from_numpy(planted.item_features["text"].values)
    assert torch.equal(text.table.detach(), raw)
    with torch.no_grad():
        text.table.add_(1.0)
    model.reset_parameters()
    assert torch.equal(text.table.detach(), raw)
    frozen = _model(planted_split, planted, train_features=False)
    assert not isinstance(frozen.modalities["text"].table, nn.Parameter)
    assert not any(k.endswith(".table") for k in frozen.state_dict())


def test_modality_branch_projects_rows() -> None:
    torch.manual_seed(0)
    branch = ModalityBranch(torch.randn(5, 3), 4)
    branch.reset_parameters()
    items = torch.tensor([4, 0, 4])
    expected = branch.table[items] @ branch.projector.weight.T + branch.projector.bias
    assert torch.allclose(branch(items), expected, atol=1e-6)
    long = torch.tensor([1, 2, 3, 4, 0, 0])  # at least the catalogue: projected once
    assert torch.allclose(branch(long), branch()[long], atol=1e-6)


def test_state_dict_round_trip_with_modalities(planted: Dataset, planted_split: Split) -> None:
    model = _model(planted_split, planted, seed=3)
    fresh = _model(planted_split, planted, seed=4)
    fresh.load_state_dict(model.state_dict())
    users = torch.arange(8)
    assert torch.allclose(model.score(users), fresh.score(users))


def test_bm3_learns_and_its_modalities_train(planted: Dataset, planted_split: Split) -> None:
    torch.manual_seed(0)
    model = create_model("bm3", modalities=["text"])
    cfg = TrainConfig(
        epochs=10,
        batch_size=512,
        learning_rate=1e-2,
        progress=False,
        valid_metric="recall_at_20",
        num_threads=1,
    )
    trainer = Trainer(model, planted_split, cfg, Evaluator(topk=(20,)), dataset=planted)
    result = trainer.fit()
    assert set(result.history[0]) >= {"rec", "align_text", "mask_text", "reg", "loss"}
    assert result.history[-1]["align_text"] < result.history[0]["align_text"]
    pop = create_model("pop")
    pop_trainer = Trainer(pop, planted_split, cfg, Evaluator(topk=(20,)), dataset=planted)
    pop_trainer.fit()
    assert trainer.evaluate("test")["recall_at_20"] > pop_trainer.evaluate("test")["recall_at_20"]


# ---------------------------------------------------------------------------------------------
# end to end: CLI, MMRec card
# ---------------------------------------------------------------------------------------------

FAST = ["--set", "train.epochs=1", "--set", "train.batch_size=512", "--quiet", "--no-tracking"]
FAST += ["--set", "train.num_threads=1"]


def test_cli_trains_bm3_with_a_chosen_modality(tmp_path: Path) -> None:
    args = ["train", "--model", "bm3", "--dataset", "synthetic-120x80x2400", *FAST]
    args += ["-o", str(tmp_path), "--set", "model.modalities=[text]"]
    args += ["--set", "train.valid_metric=recall_at_20"]
    assert main(args) == 0
    (run,) = tmp_path.glob("bm3-*")
    history = json.loads((run / "history.json").read_text())
    assert {"rec", "align_text", "mask_text", "reg"} <= set(history[0])
    assert "align_image" not in history[0]
    assert "BM3 modalities: text (64-d)" in (run / "train.log").read_text()


def _mmrec_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A card ``tinymm`` in MMRec layout, its files placed by hand in the cache."""
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "tinymm.yaml").write_text(
        textwrap.dedent(
            """\
            name: tinymm
            format: mmrec
            files:
              - name: tinymm.inter
              - name: image_feat.npy
              - name: text_feat.npy
            split:
              strategy: given
            """
        )
    )
    monkeypatch.setenv("RECSYS_DATASET_CARDS", str(cards))
    cache = tmp_path / "cache"
    monkeypatch.setenv("RECSYS_DATA_DIR", str(cache))
    folder = cache / "tinymm"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 12
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for u in range(n_users):
        items = rng.choice(n_items, size=6, replace=False)
        labels = [0, 0, 0, 0, 1, 2]
        lines += [f"{u}\t{i}\t5\t{1000 + k}\t{labels[k]}" for k, i in enumerate(items)]
    (folder / "tinymm.inter").write_text("\n".join(lines) + "\n")
    np.save(folder / "image_feat.npy", rng.random((n_items, 20)))
    np.save(folder / "text_feat.npy", rng.random((n_items, 8)).astype(np.float32))


def test_mmrec_card_loads_trains_one_epoch_and_evaluates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _mmrec_card(tmp_path, monkeypatch)
    args = ["train", "--model", "bm3", "--dataset", "tinymm", *FAST, "-o", str(tmp_path / "runs")]
    assert main(args) == 0
    (run,) = (tmp_path / "runs").glob("bm3-tinymm-*")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and "recall_at_20" in metrics["test"]
    history = json.loads((run / "history.json").read_text())
    assert {"align_image", "mask_image", "align_text", "mask_text"} <= set(history[0])
    log = (run / "train.log").read_text()
    assert "image (20-d), text (8-d)" in log
    split = np.load(run / "split.npz")
    assert split is not None  # the given split (x_label) was used and saved


def test_mmrec_card_with_a_missing_feature_file_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _mmrec_card(tmp_path, monkeypatch)
    (tmp_path / "cache" / "tinymm" / "image_feat.npy").unlink()
    args = ["train", "--model", "bm3", "--dataset", "tinymm", *FAST, "-o", str(tmp_path / "r")]
    assert main(args) != 0
    assert "image_feat.npy" in capsys.readouterr().err


def test_cosine_to_targets_matches_normalize_and_its_gradient_checks() -> None:
    from recsys.models.bm3 import CosineToTargets

    torch.manual_seed(0)
    p = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    targets = [torch.randn(7, 5, dtype=torch.float64) for _ in range(2)]
    assert torch.autograd.gradcheck(lambda x: CosineToTargets.apply(x, *targets), (p,))
    # values and the gradient of a weighted sum of both outputs are autograd's through
    # normalize, also for a zero row (divided by eps, so it has no norm term)
    with torch.no_grad():
        p[3] = 0.0
    dots = CosineToTargets.apply(p, *targets)
    weights = torch.randn(2, 7, dtype=torch.float64)

    def reference(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (F.normalize(x, dim=-1) * g).sum(-1)

    for dot, g in zip(dots, targets, strict=True):
        assert torch.allclose(dot, reference(p, g))
    total = sum((w * d).sum() for w, d in zip(weights, dots, strict=True))
    (grad,) = torch.autograd.grad(total, p)
    expected_total = sum((w * reference(p, g)).sum() for w, g in zip(weights, targets, strict=True))
    (expected,) = torch.autograd.grad(expected_total, p)
    assert torch.allclose(grad, expected)


def test_text_fields_without_a_text_modality_are_reported(
    planted: Dataset, planted_split: Split, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="recsys.models.bm3"):
        _model(planted_split, planted, modalities=["genre"], text_fields=["title"])
    assert "model.text_fields=['title'] has no effect" in caplog.text


# -- audit of the feature pipelines: hints, wide modalities, --quiet ------------------------


def _shop(folder: Path) -> Path:
    """Atomic ``shop`` files whose ``.item`` has text fields (title, tags) and a price, and
    no card: BM3's defaults find no modality in it."""
    folder.mkdir(parents=True)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"{u}\t{(u * 7 + j * 3) % 30 + 1}\t1.0\t{u * 10 + j}" for u in range(1, 25)
              for j in range(8)]  # fmt: skip
    item = ["item_id:token\ttitle:token_seq\ttags:token_seq\tprice:float"]
    item += [f"{i}\tthing {i} {['red', 'blue'][i % 2]}\tt{i % 5} t{i % 3}x\t{i % 4}.5"
             for i in range(1, 31)]  # fmt: skip
    (folder / "shop.inter").write_text("\n".join(inter) + "\n")
    (folder / "shop.item").write_text("\n".join(item) + "\n")
    return folder


def test_id_only_by_default_on_data_with_text_fields_warns_how_to_enable_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from recsys.data.readers import read_atomic
    from recsys.data.split import split_ratio

    dataset = read_atomic(_shop(tmp_path / "shop"))
    split = split_ratio(dataset, (0.8, 0.1, 0.1), seed=1)
    with caplog.at_level(logging.WARNING, logger="recsys.models.bm3"):
        assert _model(split, dataset).modality_names == []
    # before: an INFO line "BM3 without modalities: ID-only form" and no hint
    (record,) = [r for r in caplog.records if "ID-only form" in r.getMessage()]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "set model.text_fields=[title,tags]" in message and "model.modalities" in message
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recsys.models.bm3"):
        _model(split, dataset, modalities=[])  # asked for: no warning
    assert "ID-only form" in caplog.text and "WARNING" not in caplog.text


def test_a_very_wide_modality_warns_with_its_memory(
    planted: Dataset,
    planted_split: Split,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import recsys.models.bm3 as bm3

    assert bm3.WIDE_MODALITY == 8192  # documented; MMRec's 4096-d images stay below it
    monkeypatch.setattr(bm3, "WIDE_MODALITY", 32)  # genre is 16-d, image 32-d, text 64-d
    with caplog.at_level(logging.WARNING, logger="recsys.models.bm3"):
        _model(planted_split, planted)
    # before: silent, however wide (a 13,977-token field became a 13,977-d dense modality)
    assert "BM3 modality 'text' is 64 columns wide (above 32)" in caplog.text
    assert "4 copies of 200 x 64 float32" in caplog.text and "GiB" in caplog.text
    assert "'image'" not in caplog.text and "'genre'" not in caplog.text


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_hides_the_text_encoding_progress_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet: bool
) -> None:
    from recsys.data import features

    seen = []

    class Encoder:
        """Stands in for MiniLM, recording whether it was asked for a progress bar."""

        name = "fake"

        def __init__(self, progress: bool = True, **_: object) -> None:
            seen.append(progress)

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.array([[len(t), t.count(" ") + 1.0] for t in texts], dtype=np.float32)

    monkeypatch.setattr(features, "MiniLMEncoder", Encoder)
    monkeypatch.setattr(features, "text_encoder_available", lambda: True)
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "cache"))
    args = ["train", "-m", "bm3", "--data-path", str(_shop(tmp_path / "shop")), *FAST]
    args += ["-o", str(tmp_path / "runs"), "--set", "model.modalities=[text]"]
    args += ["--set", "model.text_fields=[title]", "--set", "model.embedding_size=8"]
    if not quiet:
        args = [a for a in args if a != "--quiet"]
    assert main(args) == 0
    # before: the bar showed under --quiet ("--quiet  No progress bars")
    assert seen == [not quiet]
