import numpy as np
import pytest
import torch

from recsys.data.samplers import make_sampler
from recsys.errors import ConfigError
from recsys.eval.evaluator import Evaluator
from recsys.models.registry import create_model
from recsys.train.checkpoint import load_checkpoint
from recsys.train.trainer import TrainConfig, Trainer, make_optimizer, train_step

FAST = {"epochs": 6, "batch_size": 512, "learning_rate": 0.01, "progress": False}


def _trainer(split, model="bpr", checkpoint_dir=None, callbacks=None, **overrides):
    cfg = TrainConfig(**{**FAST, **overrides})
    params = {"embedding_size": 16} if model in ("bpr", "lightgcn") else {}
    return Trainer(
        create_model(model, **params),
        split,
        cfg,
        Evaluator(topk=(10,)),
        checkpoint_dir=checkpoint_dir,
        callbacks=callbacks,
    )


def test_train_step_uses_one_batch_of_gradients(planted_split):
    torch.manual_seed(0)
    model = create_model("bpr", embedding_size=8).setup(planted_split.train)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    batches = list(
        make_sampler("pairwise", planted_split.train, 64).epoch(np.random.default_rng(0))
    )
    train_step(model, opt, batches[0])
    train_step(model, opt, batches[1])
    after_two = model.user_embedding.weight.grad.clone()
    opt.zero_grad()
    sum(model.loss(batches[1]).values()).backward()
    assert torch.allclose(after_two, model.user_embedding.weight.grad)


def test_two_runs_with_the_same_seed_agree(planted_split):
    a = _trainer(planted_split).fit()
    b = _trainer(planted_split).fit()
    assert a.best_valid == b.best_valid
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_bpr_learns_beyond_popularity(planted_split):
    trainer = _trainer(planted_split, epochs=30)
    trainer.fit()
    bpr = trainer.evaluate("test")
    pop = _trainer(planted_split, model="pop")
    pop.fit()
    assert bpr["ndcg_at_10"] > pop.evaluate("test")["ndcg_at_10"] * 1.2


def test_early_stopping_and_best_restored(planted_split, tmp_path):
    # a learning rate this high overfits fast, so validation peaks early
    trainer = _trainer(
        planted_split, checkpoint_dir=tmp_path, epochs=60, patience=3, learning_rate=0.2
    )
    result = trainer.fit()
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 1 + 3
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == result.best_epoch
    for key, value in best["model"].items():
        assert torch.equal(trainer.model.state_dict()[key], value)
    assert trainer.evaluate("valid")["ndcg_at_10"] == pytest.approx(result.best_valid["ndcg_at_10"])


def test_resume_continues_exactly(planted_split, tmp_path):
    straight = _trainer(planted_split, checkpoint_dir=tmp_path / "a").fit()

    def crash(report):
        if report.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _trainer(planted_split, checkpoint_dir=tmp_path / "b", callbacks=[crash]).fit()
    resumed_trainer = _trainer(planted_split, checkpoint_dir=tmp_path / "b")
    resumed = resumed_trainer.fit(resume=True)
    assert len(resumed.history) == len(straight.history)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert resumed.best_valid == straight.best_valid


def test_closed_form_model_trains_in_one_step(planted_split, tmp_path):
    trainer = _trainer(planted_split, model="itemknn", checkpoint_dir=tmp_path)
    result = trainer.fit()
    assert result.epochs_run == 1 and (tmp_path / "best.pt").is_file()


def test_bad_train_config_values():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=-1)
    with pytest.raises(ValueError, match="unknown metric|not a known metric|ndgc"):
        TrainConfig(valid_metric="ndgc_at_10")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        if torch.cuda.is_available():
            pytest.skip("machine has CUDA")
        Trainer(create_model("bpr"), None, TrainConfig(device="cuda"))  # type: ignore[arg-type]


def test_optimizer_choices(planted_split):
    model = create_model("bpr").setup(planted_split.train)
    for name in ("adam", "adamw", "sgd", "adagrad"):
        assert make_optimizer(model, TrainConfig(optimizer=name)).__class__.__name__.lower() == name


def test_sparse_adam_updates_only_the_batch_rows_and_learns(planted_split):
    model = create_model("bpr", embedding_size=16).setup(planted_split.train)
    opt = make_optimizer(model, TrainConfig(optimizer="sparse_adam", learning_rate=0.01))
    assert model.sparse_grad
    batch = next(make_sampler("pairwise", planted_split.train, 8).epoch(np.random.default_rng(0)))
    before = model.user_embedding.weight.detach().clone()
    train_step(model, opt, batch)
    assert model.user_embedding.weight.grad.is_sparse
    changed = (model.user_embedding.weight.detach() != before).any(dim=1).nonzero().ravel()
    assert set(changed.tolist()) == set(batch["user"].tolist())

    trainer = _trainer(planted_split, epochs=30, optimizer="sparse_adam")
    trainer.fit()
    pop = _trainer(planted_split, model="pop")
    pop.fit()
    assert trainer.evaluate("test")["ndcg_at_10"] > pop.evaluate("test")["ndcg_at_10"] * 1.2


def test_sparse_adam_needs_a_model_with_sparse_gradients(planted_split):
    model = create_model("lightgcn").setup(planted_split.train)
    with pytest.raises(ConfigError, match="sparse_adam.*lightgcn"):
        make_optimizer(model, TrainConfig(optimizer="sparse_adam"))
    with pytest.raises(ConfigError, match="weight_decay"):
        make_optimizer(
            create_model("bpr").setup(planted_split.train),
            TrainConfig(optimizer="sparse_adam", weight_decay=0.1),
        )


def test_a_diverging_run_is_a_one_line_error_naming_the_learning_rate(tmp_path, capsys):
    from recsys.cli import main

    code = main(["train", "--model", "bpr", "--dataset", "synthetic-120x80x2400", "--no-tracking",
                 "--quiet", "-o", str(tmp_path), "--set", "train.learning_rate=1e30",
                 "--set", "train.epochs=3"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert "error: loss became nan" in err and "lower train.learning_rate" in err


def test_weights_that_overflow_while_the_loss_stays_finite_are_a_diverged_run(tmp_path, capsys):
    """At lr 1e38 BPR's loss stays finite (saturated) but the embeddings overflow: validation
    scores NaN. That is a diverged run (exit 2, naming the learning rate), not a crash (exit 3);
    as a TrainingDivergedError a tune trial counts it as diverged, not as a failure to retry."""
    from recsys.cli import main

    code = main(["train", "--model", "bpr", "--dataset", "synthetic-120x80x2400", "--no-tracking",
                 "--quiet", "-o", str(tmp_path), "--set", "train.learning_rate=1e38",
                 "--set", "train.epochs=3"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert "error: epoch 0: score_fn returned NaN scores for 120 of 120 users" in err
    assert "lower train.learning_rate" in err


@pytest.mark.parametrize("key", ["train.seed", "split.seed", "data.seed"])
def test_a_negative_seed_is_refused_naming_its_key(tmp_path, key):
    from recsys.testing import check_bad_setting_refused

    check_bad_setting_refused("bpr", f"{key}=-1", key, tmp_path)


def test_gradient_clipping_counts_only_the_optimised_parameters(planted_split):
    """DNIS's alpha keeps the gradient of its last validation step while the next training
    step runs; that stale gradient must neither enter the clipping norm nor be scaled."""
    from recsys.data.samplers import HeldOutPairwiseSampler
    from recsys.train.trainer import auxiliary_step

    torch.manual_seed(0)
    model = create_model("dnis").setup(planted_split.train)
    optimizer = make_optimizer(model, TrainConfig())
    alphas = model.auxiliary_parameters()
    valid_batch = next(
        HeldOutPairwiseSampler(planted_split.valid, planted_split.train, 256).epoch(
            np.random.default_rng(1)
        )
    )
    auxiliary_step(model, model.auxiliary_optimizer(alphas), valid_batch)
    stale = [a.grad.clone() for a in alphas]
    assert all(g.abs().sum() > 0 for g in stale)

    batch = next(make_sampler("pairwise", planted_split.train, 256).epoch(np.random.default_rng(0)))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    optimizer.zero_grad()
    sum(model.loss(batch).values()).backward()
    reference = [p.grad.clone() if p.grad is not None else None for p in params]
    raw = float(
        torch.linalg.vector_norm(torch.stack([g.norm() for g in reference if g is not None]))
    )

    def grads_after_step(max_norm):
        # the gradients the step used (the step moves the weights, not the gradients)
        train_step(model, optimizer, batch, clip_grad_norm=max_norm)
        return [p.grad.clone() if p.grad is not None else None for p in params]

    state = {k: v.clone() for k, v in model.state_dict().items()}
    # a limit above the gradient's norm clips nothing
    for got, ref in zip(grads_after_step(raw * 1.01), reference, strict=True):
        if ref is not None:
            torch.testing.assert_close(got, ref, rtol=1e-6, atol=0)
    for alpha, before in zip(alphas, stale, strict=True):
        assert torch.equal(alpha.grad, before)
    # a limit below it scales the optimised gradients to exactly that norm
    model.load_state_dict(state)
    got = grads_after_step(raw / 2)
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in got if g is not None]))
    assert float(norm) == pytest.approx(raw / 2, rel=1e-4)


def test_gradient_clipping_with_sparse_adam(planted_split, tmp_path, capsys):
    """Row-sparse gradients are clipped by the same total norm as their dense form."""
    torch.manual_seed(0)
    sparse = create_model("bpr", embedding_size=8).setup(planted_split.train)
    dense = create_model("bpr", embedding_size=8).setup(planted_split.train)
    dense.load_state_dict(sparse.state_dict())
    sparse_opt = make_optimizer(sparse, TrainConfig(optimizer="sparse_adam"))
    dense_opt = make_optimizer(dense, TrainConfig(optimizer="sgd"))
    batch = next(make_sampler("pairwise", planted_split.train, 64).epoch(np.random.default_rng(0)))
    train_step(sparse, sparse_opt, batch, clip_grad_norm=1e-3)
    train_step(dense, dense_opt, batch, clip_grad_norm=1e-3)
    for name, param in sparse.named_parameters():
        assert param.grad.is_sparse
        torch.testing.assert_close(
            param.grad.to_dense(), dict(dense.named_parameters())[name].grad, rtol=1e-5, atol=1e-9
        )

    from recsys.cli import main

    code = main(["train", "--model", "bpr", "--dataset", "synthetic-120x80x2400", "--no-tracking",
                 "--quiet", "-o", str(tmp_path), "--set", "train.optimizer=sparse_adam",
                 "--set", "train.clip_grad_norm=0.5", "--set", "train.epochs=2"])  # fmt: skip
    assert code == 0, capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model", ["multvae", "bm3"])
def test_resume_on_cuda_continues_the_device_random_stream(planted_split, tmp_path, model):
    """Dropout masks and noise drawn on the GPU come from the CUDA generator: resume restores
    it, so a resumed GPU run matches an uninterrupted one."""
    straight = _trainer(planted_split, model, tmp_path / "a", device="cuda").fit()

    def crash(report):
        if report.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _trainer(planted_split, model, tmp_path / "b", callbacks=[crash], device="cuda").fit()
    resumed = _trainer(planted_split, model, tmp_path / "b", device="cuda").fit(resume=True)
    # CUDA's sparse products add in no fixed order, so even two uninterrupted runs differ in
    # the last bits (BM3 on an H200: 1.75876071 vs 1.75876070 in epoch 0); a dropout stream
    # that resume failed to restore moves the loss by far more than this tolerance
    losses = [h["loss"] for h in resumed.history]
    assert losses == pytest.approx([h["loss"] for h in straight.history], rel=1e-5)
    assert resumed.best_valid == pytest.approx(straight.best_valid, rel=1e-4)


def _valid_item_above_test_item():
    """Users 0 and 1 hold item 5; item 0 (more popular) is their validation item, item 1
    their test item: Pop ranks item 0 first, then item 1."""
    import scipy.sparse as sp

    from recsys.data.split import Split

    def csr(pairs):
        rows, cols = zip(*pairs, strict=True)
        return sp.csr_array((np.ones(len(rows), np.float32), (rows, cols)), shape=(4, 6))

    return Split(
        train=csr([(0, 5), (1, 5), (2, 0), (2, 1), (3, 0)]),
        valid=csr([(0, 0), (1, 0)]),
        test=csr([(0, 1), (1, 1)]),
    )


@pytest.mark.parametrize(("mask_valid", "recall"), [(True, 1.0), (False, 0.0)])
def test_test_masks_validation_items_unless_told_not_to(mask_valid, recall):
    # RecBole masks validation items at test; MMRec (BM3's protocol) leaves them rankable
    split = _valid_item_above_test_item()
    evaluator = Evaluator(topk=[1], metrics=["recall"], mask_valid_at_test=mask_valid)
    config = TrainConfig(progress=False, valid_metric="recall_at_1")
    trainer = Trainer(create_model("pop"), split, config, evaluator)
    trainer.fit()
    assert trainer.evaluate("test")["recall_at_1"] == recall
    assert trainer.evaluate("valid")["recall_at_1"] == 1.0  # validation never masks itself


def test_the_mask_valid_at_test_key_reaches_the_evaluator():
    from recsys.config import build_run_config
    from recsys.experiment import make_evaluator

    assert make_evaluator(build_run_config(None, [])).mask_valid_at_test
    cfg = build_run_config(None, ["eval.mask_valid_at_test=false"])
    assert not make_evaluator(cfg).mask_valid_at_test
