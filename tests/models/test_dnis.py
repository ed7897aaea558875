"""DNIS: frequency blocks, the alpha step, the bi-level hook, pruning, the mixed-width model."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from recsys.data.samplers import make_sampler
from recsys.errors import ConfigError
from recsys.eval.evaluator import Evaluator
from recsys.models.dnis import (
    DNIS,
    AlphaOptimizer,
    MixedDimEmbedding,
    SelectedEmbedding,
    frequency_blocks,
    mde_dims,
    normalize_block_grad,
    row_frequencies,
    select_cells,
)
from recsys.models.registry import create_model
from recsys.train.checkpoint import load_checkpoint
from recsys.train.trainer import TrainConfig, Trainer, auxiliary_step, make_optimizer, train_step

BASES = {
    "bpr": {"embedding_size": 16},
    "lightgcn": {"embedding_size": 16, "n_layers": 1},
    "twotower": {"embedding_size": 16},
}
FAST = {"batch_size": 512, "learning_rate": 0.01, "progress": False, "patience": 2}


def _dnis(base: str = "bpr", **params) -> DNIS:
    values = {"base": base, "base_params": BASES[base], "n_blocks": 4, **params}
    return create_model("dnis", **values)


def _setup(split, base="bpr", seed=0, **params) -> DNIS:
    torch.manual_seed(seed)
    return _dnis(base, **params).setup(split.train)


def _batch(model, matrix, size=256, seed=0):
    return next(make_sampler(model.batch_kind, matrix, size).epoch(np.random.default_rng(seed)))


def _trainer(split, model, checkpoint_dir=None, callbacks=None, **train):
    return Trainer(
        model,
        split,
        TrainConfig(**{**FAST, **train}),
        Evaluator(topk=(10, 20)),
        checkpoint_dir=checkpoint_dir,
        callbacks=callbacks,
    )


# -- frequency order and blocks -------------------------------------------------------------


def test_rows_are_ranked_by_descending_frequency_and_cut_into_blocks():
    freq = np.array([3, 10, 0, 10, 5, 1])
    order, block = frequency_blocks(freq, np.array([0.5, 0.5]))
    assert order.tolist() == [1, 3, 4, 0, 5, 2]  # ties keep the lower id first
    assert block.tolist() == [1, 0, 1, 0, 0, 1]
    # uneven shares, most frequent first: 2, 3 and 5 of 10 rows
    freq = np.arange(10)[::-1].copy()
    _, block = frequency_blocks(freq, np.array([0.2, 0.3, 0.5]))
    assert block.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]


def test_row_frequencies_per_role(planted_split):
    train = planted_split.train
    users, items = row_frequencies(train, "user"), row_frequencies(train, "item")
    assert users.sum() == items.sum() == train.nnz
    assert np.array_equal(row_frequencies(train, "node"), np.concatenate([users, items]))
    with pytest.raises(ConfigError, match="role 'query'"):
        row_frequencies(train, "query")


@pytest.mark.parametrize("base", list(BASES))
def test_model_blocks_follow_training_frequency(planted_split, base):
    model = _setup(planted_split, base)
    roles = model.base.id_embeddings()
    assert roles and set(model.block_order) == set(roles)
    for role, attr in roles.items():
        table = getattr(model.base, attr)
        assert isinstance(table, SelectedEmbedding)
        freq = row_frequencies(planted_split.train, role)
        block = table.row_block.numpy()
        # equal shares of rows, and every row of block s is at least as frequent as block s+1
        assert (
            np.bincount(block, minlength=4).tolist()
            == np.diff(np.rint(np.linspace(0, len(freq), 5))).astype(int).tolist()
        )
        for s in range(3):
            assert freq[block == s].min() >= freq[block == s + 1].max()


def test_custom_block_fractions(planted_split):
    model = _setup(planted_split, block_fractions=[0.1, 0.3, 0.6])
    sizes = model.base.item_embedding.block_sizes().tolist()
    assert sizes == [20, 60, 120] and model.base.item_embedding.alpha.shape == (3, 16)


# -- the alpha step --------------------------------------------------------------------------


def test_gradient_normalisation_is_per_block_row():
    grad = torch.tensor([[1e-4, -3e-4, 2e-4], [10.0, 20.0, -30.0]])
    out = normalize_block_grad(grad)
    assert torch.allclose(out.abs().mean(dim=1), torch.ones(2), atol=1e-3)
    # within a row, the shape of the gradient is kept
    assert torch.allclose(out[0], grad[0] / 2e-4, rtol=1e-3)
    assert torch.allclose(out[1], grad[1] / 20.0)


def test_alpha_optimizer_moves_rare_and_frequent_blocks_alike_and_clamps():
    alpha = torch.nn.Parameter(torch.full((2, 3), 0.5))
    opt = AlphaOptimizer([alpha], lr=0.1)
    alpha.grad = torch.tensor([[1e-5, 1e-5, 1e-5], [1e3, 1e3, 1e3]])
    opt.step()
    assert torch.allclose(alpha.detach(), torch.full((2, 3), 0.4), atol=1e-4)
    # a big step is clamped to [0, 1] on both sides
    alpha.grad = torch.tensor([[1.0, -1.0, 0.0], [1.0, 1.0, -1.0]])
    for _ in range(20):
        opt.step()
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert alpha[0, 0] == 0 and alpha[0, 1] == 1 and alpha[1, 2] == 1
    # without normalisation the raw gradient is used
    beta = torch.nn.Parameter(torch.full((1, 2), 0.5))
    AlphaOptimizer([beta], lr=0.1, normalize=False)
    beta.grad = torch.tensor([[1.0, 2.0]])
    AlphaOptimizer([beta], lr=0.1, normalize=False).step()
    assert torch.allclose(beta.detach(), torch.tensor([[0.4, 0.3]]))


@pytest.mark.parametrize("base", list(BASES))
def test_training_batches_leave_alpha_and_validation_batches_leave_weights(planted_split, base):
    model = _setup(planted_split, base)
    alphas = model.auxiliary_parameters()
    assert alphas and all(a.shape == (4, a.shape[1]) for a in alphas)
    optimizer = make_optimizer(model, TrainConfig(learning_rate=0.01))
    in_main = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not in_main & {id(a) for a in alphas}
    aux = model.auxiliary_optimizer(alphas)
    weights = {n: p for n, p in model.named_parameters() if not n.endswith("alpha")}

    alpha_before = [a.detach().clone() for a in alphas]
    weights_before = {n: p.detach().clone() for n, p in weights.items()}
    train_step(model, optimizer, _batch(model, planted_split.train))
    assert all(torch.equal(a, b) for a, b in zip(alphas, alpha_before, strict=True))
    assert all(a.grad is None for a in alphas)  # alpha is a constant to training batches
    assert any(not torch.equal(weights[n], weights_before[n]) for n in weights)

    weights_before = {n: p.detach().clone() for n, p in weights.items()}
    grads_before = {n: None if p.grad is None else p.grad.clone() for n, p in weights.items()}
    terms = auxiliary_step(model, aux, _batch(model, planted_split.valid, seed=1))
    assert "aux_loss" in terms and "aux_l1" in terms
    for n, p in weights.items():
        assert torch.equal(p, weights_before[n]), n
        before = grads_before[n]
        assert (p.grad is None) == (before is None) and (
            before is None or torch.equal(p.grad, before)
        )
    assert any(not torch.equal(a, b) for a, b in zip(alphas, alpha_before, strict=True))
    assert all(a.min() >= 0 and a.max() <= 1 for a in alphas)


def test_warm_start_keeps_alpha_and_search_moves_it(planted_split):
    warm_only = _setup(planted_split, warm_start_epochs=2, search_epochs=0, finetune=False)
    _trainer(planted_split, warm_only, epochs=5).fit()
    searched = _setup(planted_split, warm_start_epochs=1, search_epochs=1, finetune=False)
    result = _trainer(planted_split, searched, epochs=5).fit()
    # the schedule ends the run: warm start + search, nothing after
    assert result.epochs_run == 2
    assert [("aux_loss" in h) for h in result.history] == [False, True]
    # both end compact; the warm-only model kept alpha = 1 (nothing to fold but the mask)
    assert warm_only.is_compact() and searched.is_compact()
    assert result.history[1]["aux_l1"] > 0


# -- pruning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.9, 0.5, 0.25, 0.1])
def test_pruning_hits_the_requested_ratio(planted_split, ratio):
    model = _setup(planted_split, keep_ratio=ratio)
    # make the cell scores differ like a trained model's
    with torch.no_grad():
        for table in model._wrappers().values():
            table.alpha.uniform_(0, 1)
    model.prune()
    full = model.full_parameters()
    assert full == (300 + 200) * 16
    largest_cell = max(int(t.block_sizes().max()) for t in model._wrappers().values())
    assert abs(model.kept_parameters() - ratio * full) <= largest_cell / 2
    report = model.dimension_report()
    assert report["kept_parameters"] == model.kept_parameters()
    assert all(0 <= r["dim"] <= 16 for rows in report["blocks"].values() for r in rows)


def test_parameter_budget_and_min_dim(planted_split):
    model = _setup(planted_split, param_budget=2000, min_dim=1)
    model.prune()
    assert abs(model.kept_parameters() - 2000) <= 75 / 2
    assert all(d >= 1 for dims in model.block_dims().values() for d in dims)


def test_select_cells_prefers_high_scores_and_costs_rows():
    scores = [torch.tensor([[3.0, 1.0], [2.0, 0.5]])]
    sizes = [torch.tensor([10, 100])]
    # best first: 3.0 (costs 10), 2.0 (100), 1.0 (10), 0.5 (100); the prefix closest wins
    (mask,) = select_cells(scores, sizes, budget=20)
    assert mask.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    (mask,) = select_cells(scores, sizes, budget=118)
    assert mask.tolist() == [[1.0, 1.0], [1.0, 0.0]]
    (mask,) = select_cells(scores, sizes, budget=100)
    assert mask.tolist() == [[1.0, 0.0], [1.0, 0.0]]
    with pytest.raises(ConfigError, match="min_dim"):
        select_cells(scores, sizes, budget=50, min_dim=1)


def test_nested_selection_keeps_a_prefix_of_one_column_ranking():
    # column 2 ranks first, then 0, then 1; block 1 alone would prefer column 1
    scores = [torch.tensor([[2.0, 0.1, 3.0], [0.2, 5.0, 0.3]]), torch.tensor([[1.0, 0.5, 4.0]])]
    sizes = [torch.tensor([10, 10]), torch.tensor([10])]
    order = torch.tensor([2, 0, 1])
    for budget in range(0, 91, 10):
        masks = select_cells(scores, sizes, budget=budget, column_order=order)
        kept = sum(int((m * torch.tensor([[10.0]])).sum()) for m in masks)
        assert kept == budget
        for mask in masks:
            for row in mask[:, order]:  # in ranking order every block keeps a prefix
                width = int(row.sum())
                assert row[:width].all() and not row[width:].any()
    # free selection would give block 1 its column 1 first
    (free, _) = select_cells(scores, sizes, budget=10)
    (nested, _) = select_cells(scores, sizes, budget=10, column_order=order)
    assert free[1].tolist() == [0.0, 1.0, 0.0] and nested[1].sum() == 0


def test_nested_structure_prunes_rows_onto_shared_columns(planted_split):
    model = _setup(planted_split, keep_ratio=0.4, structure="nested")
    with torch.no_grad():
        for table in model._wrappers().values():
            table.alpha.uniform_(0, 1)
    model.prune()
    kept = [w.mask.bool() for w in model._wrappers().values()]
    rows = torch.cat(kept)
    # nested column sets: of any two blocks (of either table), one keeps a subset of the other
    for a in rows:
        for b in rows:
            assert bool((a & ~b).sum() == 0) or bool((b & ~a).sum() == 0)


def test_retraining_from_scratch_reinitialises_under_the_mask(planted_split):
    model = _setup(
        planted_split,
        keep_ratio=0.5,
        warm_start_epochs=1,
        search_epochs=1,
        finetune_from="scratch",
    )
    trainer = _trainer(planted_split, model, epochs=3, patience=5)
    seen = {}

    def spy(report):
        if report.epoch == 1:  # the last search epoch: remember the searched weights
            seen["weight"] = model.base.user_embedding.embedding.weight.detach().clone()
        if report.epoch == 2:
            seen["best_epoch"] = report.best_epoch

    trainer.callbacks = [spy]
    plans = []
    begin = model.begin_epoch

    def record(epoch):
        plan = begin(epoch)
        plans.append(plan)
        if plan.restart:
            seen["after_reset"] = model.base.user_embedding.embedding.weight.detach().clone()
            seen["alpha"] = [w.alpha.detach().clone() for w in model._wrappers().values()]
        return plan

    model.begin_epoch = record
    result = trainer.fit()
    assert [p.restart for p in plans] == [False, False, True]
    # fresh weights (not the searched ones), alpha back to 1, the mask kept
    assert not torch.allclose(seen["after_reset"], seen["weight"])
    assert all(bool((a == 1).all()) for a in seen["alpha"])
    assert bool(model.pruned) and model.kept_parameters() < model.full_parameters()
    # selection restarted: the best epoch is the retrained one, whatever the search scored
    assert seen["best_epoch"] == 2 and result.best_epoch == 2


def test_trainer_restart_clears_optimizer_state_and_selection(planted_split):
    model = _setup(
        planted_split, keep_ratio=0.5, warm_start_epochs=1, search_epochs=0, finetune_from="scratch"
    )
    trainer = _trainer(planted_split, model, epochs=2, patience=5)
    states = []
    step = torch.optim.Adam.step

    def count(self, *args, **kwargs):
        states.append(sum(int(s["step"]) for s in self.state.values() if "step" in s))
        return step(self, *args, **kwargs)

    torch.optim.Adam.step = count
    try:
        trainer.fit()
    finally:
        torch.optim.Adam.step = step
    per_epoch = len(states) // 2
    # the first step after the restart sees no moments of the searched weights
    assert states[per_epoch] == 0 and states[per_epoch - 1] > 0


def test_mde_widths_follow_popularity_within_the_budget():
    interactions = np.array([500, 200, 100, 50, 10])
    sizes = np.array([20, 20, 20, 20, 20])
    budget = 0.5 * 100 * 16
    uniform = mde_dims(interactions, sizes, budget, 16, 0.0)
    assert uniform == [8, 8, 8, 8, 8]
    skewed = mde_dims(interactions, sizes, budget, 16, 1.0)
    assert skewed == sorted(skewed, reverse=True) and skewed[0] == 16  # capped at K
    assert abs(sum(d * 20 for d in skewed) - budget) <= 20 * len(sizes)
    rare = mde_dims(interactions, sizes, budget, 16, -0.5)
    assert rare == sorted(rare)


def test_fixed_block_dims_train_without_a_search(planted_split):
    dims = {"user": [16, 8, 4, 2], "item": [8, 8, 8, 8]}
    model = _setup(planted_split, block_dims=dims)
    result = _trainer(planted_split, model, epochs=2).fit()
    assert not any("aux_loss" in h for h in result.history)
    assert model.block_dims() == dims
    # the trained model is the compact one; every block keeps its first d_s columns
    assert model.is_compact()
    for role, attr in model._roles.items():
        table = getattr(model.base, attr)
        for s, width in enumerate(dims[role]):
            assert torch.equal(getattr(table, f"cols_{s}"), torch.arange(width))
    with pytest.raises(ConfigError, match="model.block_dims.item"):
        _setup(planted_split, block_dims={"user": [1, 1, 1, 1], "item": [1, 1, 99, 1]})
    with pytest.raises(ConfigError, match="block_dims names roles"):
        _setup(planted_split, block_dims={"user": [1, 1, 1, 1]})
    with pytest.raises(ConfigError, match="not both"):
        _setup(planted_split, block_dims=dims, mde_exponent=0.5)
    with pytest.raises(ConfigError, match="mde_exponent"):
        _setup(planted_split, mde_exponent=float("nan"))


def test_mde_allocation_through_a_run(tmp_path):
    import json

    from recsys.config import build_run_config
    from recsys.experiment import train_run

    cfg = build_run_config(
        None,
        ["model.mde_exponent=1.0", "model.keep_ratio=0.5", "train.epochs=2"],
        model={"name": "dnis", "base": "bpr", "base_params": {"embedding_size": 16}},
        data={"name": "synthetic-300x200x4000"},
        train={"progress": False},
        tracking={"enabled": False},
        output_dir=str(tmp_path),
    )
    train_run(cfg)
    report = json.loads(next(tmp_path.glob("**/dnis_dimensions.json")).read_text())
    item = [r["dim"] for r in report["blocks"]["item"]]
    # the most frequent items get the widest block, and the budget holds
    assert item[0] > item[-1] and abs(report["kept_ratio"] - 0.5) < 0.05


def test_pruned_model_scores_through_its_mask(planted_split):
    model = _setup(planted_split, keep_ratio=0.3)
    model.prune()
    for table in model._wrappers().values():
        zeroed = table.mask[table.row_block] == 0
        assert (table.weight[zeroed] == 0).all()


# -- the mixed-width model -------------------------------------------------------------------


@pytest.mark.parametrize("base", list(BASES))
def test_compact_state_reloads_and_scores_identically(planted_split, base):
    model = _setup(planted_split, base, keep_ratio=0.4)
    optimizer = make_optimizer(model, TrainConfig(learning_rate=0.05))
    aux = model.auxiliary_optimizer(model.auxiliary_parameters())
    for seed in range(3):
        train_step(model, optimizer, _batch(model, planted_split.train, seed=seed))
        auxiliary_step(model, aux, _batch(model, planted_split.valid, seed=seed))
    model.eval()
    users = torch.arange(planted_split.shape[0])
    expected = model.score(users)

    state = model.export_state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    fresh = _dnis(base, keep_ratio=0.4).setup(planted_split.train)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    fresh.eval()
    assert fresh.is_compact()
    assert all(isinstance(m, MixedDimEmbedding) for m in fresh._tables().values())
    assert torch.equal(fresh.score(users), expected)
    assert fresh.block_dims() == model.block_dims()
    assert fresh.kept_parameters() == model.kept_parameters()
    # the stored tables really are smaller: parameters and bytes
    full_state = model.state_dict()
    roles = model.base.id_embeddings().values()
    full_numel = sum(full_state[f"base.{a}.embedding.weight"].numel() for a in roles)
    compact_numel = sum(
        v.numel() for k, v in state.items() if any(k.startswith(f"base.{a}.tables.") for a in roles)
    )
    largest_cell = max(int(t.row_block.bincount().max()) for t in fresh._tables().values())
    assert compact_numel == model.kept_parameters() <= 0.4 * full_numel + largest_cell / 2
    full_buf = io.BytesIO()
    torch.save(full_state, full_buf)
    assert len(buf.getvalue()) < len(full_buf.getvalue())


def test_trainer_saves_the_compact_model_and_restores_it(planted_split, tmp_path):
    model = _setup(planted_split, keep_ratio=0.5, warm_start_epochs=1, search_epochs=1)
    trainer = _trainer(planted_split, model, checkpoint_dir=tmp_path, epochs=4)
    result = trainer.fit()
    best = load_checkpoint(tmp_path / "best.pt")["model"]
    assert "base.user_embedding.tables.0" in best and "base.user_embedding.alpha" not in best
    last = load_checkpoint(tmp_path / "last.pt")
    assert "base.user_embedding.alpha" in last["model"] and "aux_optimizer" in last
    # after fit the model is the best epoch's compact model, scoring as validated
    assert model.is_compact()
    assert trainer.evaluate("valid") == result.best_valid
    reloaded = _dnis(keep_ratio=0.5).setup(planted_split.train)
    reloaded.load_state_dict(best)
    users = torch.arange(50)
    assert torch.equal(reloaded.score(users), model.score(users))


def test_resume_is_exact_with_the_alpha_optimizer_state(planted_split, tmp_path):
    params = {"warm_start_epochs": 1, "search_epochs": 2, "alpha_optimizer": "adam"}
    straight = _trainer(planted_split, _setup(planted_split, **params), tmp_path / "a", epochs=4)
    a = straight.fit()

    def crash(report):
        if report.epoch == 1:  # in the middle of the search
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _trainer(
            planted_split, _setup(planted_split, **params), tmp_path / "b", [crash], epochs=4
        ).fit()
    last = load_checkpoint(tmp_path / "b" / "last.pt")
    assert last["aux_optimizer"]["state"]  # Adam moments of alpha were saved
    resumed = _trainer(planted_split, _setup(planted_split, **params), tmp_path / "b", epochs=4)
    b = resumed.fit(resume=True)
    assert [h["loss"] for h in b.history] == [h["loss"] for h in a.history]
    assert [h.get("aux_loss") for h in b.history] == [h.get("aux_loss") for h in a.history]
    assert b.best_valid == a.best_valid
    sa = load_checkpoint(tmp_path / "a" / "best.pt")["model"]
    sb = load_checkpoint(tmp_path / "b" / "best.pt")["model"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- configuration ---------------------------------------------------------------------------


def test_config_errors_name_the_key(planted_split):
    with pytest.raises(ConfigError, match="model.base='pop'.*no trainable ID embeddings"):
        create_model("dnis", base="pop")
    with pytest.raises(ConfigError, match="model.base_params.embeding_size"):
        create_model("dnis", base="bpr", base_params={"embeding_size": 8})
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        create_model("dnis", base="nope")
    with pytest.raises(ConfigError, match="cannot wrap itself"):
        create_model("dnis", base="dnis")
    with pytest.raises(ConfigError, match="block_fractions"):
        create_model("dnis", block_fractions=[0.5, 0.6])
    with pytest.raises(ConfigError, match="keep_ratio"):
        create_model("dnis", keep_ratio=1.5)
    with pytest.raises(ConfigError, match="param_budget=99999999 exceeds"):
        _setup(planted_split, param_budget=99_999_999)


def test_config_resolves_the_base_defaults():
    model = create_model("dnis", base="lightgcn", base_params={"n_layers": 1})
    assert model.config.base_params["n_layers"] == 1
    assert model.config.base_params["embedding_size"] == 64
    assert model.batch_kind == "pairwise"
    assert create_model("dnis", base="twotower").batch_kind == "pairs"
    assert repr(model) == "DNIS(base='lightgcn', n_blocks=10, keep_ratio=0.5)"


def test_an_empty_validation_part_is_a_clear_error(planted_split):
    import dataclasses

    import scipy.sparse as sp

    empty = sp.csr_array(planted_split.valid.shape, dtype=np.float32)
    split = dataclasses.replace(planted_split, valid=empty)
    model = _setup(planted_split)
    with pytest.raises(ConfigError, match="split.valid is empty"):
        _trainer(split, model, epochs=2).fit()


def test_early_stopping_waits_for_the_search_to_end(planted_split):
    # patience 1 would stop a plain run at its first non-improving epoch; warm start and
    # search never count, so pruning and one fine-tuning epoch always happen
    model = _setup(planted_split, warm_start_epochs=2, search_epochs=1)
    result = _trainer(planted_split, model, epochs=6, patience=1, learning_rate=0.3).fit()
    assert result.epochs_run >= 4
    assert [("aux_loss" in h) for h in result.history[:3]] == [False, False, True]


def test_a_budget_below_one_dimension_per_row_is_a_clear_error(planted_split):
    # 300 users + 200 items at K = 16: 8000 parameters, one dimension per row costs 500
    with pytest.raises(ConfigError, match=r"model.keep_ratio=0.05 \(400 parameters\).*500 rows"):
        _setup(planted_split, keep_ratio=0.05)
    with pytest.raises(ConfigError, match=r"model.param_budget=3 is less than one dimension"):
        _setup(planted_split, param_budget=3)
    # exactly one dimension per row is allowed, and every block can be paid for
    model = _setup(planted_split, keep_ratio=1 / 16)
    model.prune()
    assert abs(model.kept_parameters() - 500) <= 75 / 2
    # min_dim is checked at set-up, not at pruning after the warm start and the search
    with pytest.raises(ConfigError, match=r"model.min_dim=4 needs 2000 parameters"):
        _setup(planted_split, keep_ratio=0.2, min_dim=4)
    # fixed widths do not read the budget, so it is refused rather than ignored
    dims = {"user": [1, 1, 1, 1], "item": [1, 1, 1, 1]}
    with pytest.raises(ConfigError, match=r"model.param_budget=600 applies to a search"):
        _setup(planted_split, param_budget=600, block_dims=dims)
    with pytest.raises(ConfigError, match=r"not to model.mde_exponent"):
        _setup(planted_split, param_budget=600, mde_exponent=0.5)


def test_every_frequency_block_needs_a_row(planted_split):
    # 200 items: 250 equal blocks would leave 50 of them empty
    with pytest.raises(ConfigError, match=r"model.n_blocks=250 exceeds the 200 rows of the item"):
        _setup(planted_split, n_blocks=250)
    with pytest.raises(ConfigError, match=r"model.n_blocks=301 exceeds the 300 rows of the user"):
        _setup(planted_split, n_blocks=301)
    with pytest.raises(ConfigError, match=r"model.block_fractions=\[0.001, 0.999\]: block 0"):
        _setup(planted_split, block_fractions=[0.001, 0.999])
    model = _setup(planted_split, n_blocks=200, keep_ratio=0.5)  # one item per block is fine
    assert model.base.item_embedding.block_sizes().min() == 1


@pytest.mark.parametrize("base", ["bpr", "lightgcn"])
def test_the_alpha_step_sees_the_task_loss_not_the_base_regulariser(planted_split, base):
    # the base's L2 penalty on looked-up embeddings scales with alpha^2: in the validation
    # loss it would push every alpha down beside the L1 term (the authors' search has no such
    # term); the same model with and without it must give alpha the same gradient
    grads = []
    for reg_weight in (0.0, 10.0):
        model = _setup(planted_split, base, base_params={**BASES[base], "reg_weight": reg_weight})
        terms = model.auxiliary_loss(_batch(model, planted_split.valid, seed=1))
        assert set(terms) == {"task", "l1"}
        grads.append(torch.autograd.grad(sum(terms.values()), model.auxiliary_parameters()))
    for without, with_reg in zip(*grads, strict=True):
        assert torch.equal(without, with_reg)


def test_the_alpha_step_of_a_two_tower_leaves_its_ssl_task_out(planted, planted_split):
    # the SSL loss is computed on items drawn from the catalogue, not on the validation batch
    torch.manual_seed(0)
    params = {**BASES["twotower"], "ssl": "rfm", "ssl_weight": 1.0}
    model = _dnis("twotower", base_params=params).setup(planted_split.train, planted)
    assert "ssl" in model.loss(_batch(model, planted_split.train))
    batch = _batch(model, planted_split.valid, seed=1)
    terms = model.auxiliary_loss(batch)
    assert set(terms) == {"task", "l1"}
    with torch.no_grad():
        main = model.loss(batch)["main"]
    assert terms["task"].item() == pytest.approx(main.item(), rel=1e-6)


def test_a_block_pruned_to_width_zero_is_warned_about(planted_split, caplog):
    # its rows keep no embedding: every score with them is 0 under a dot product
    widths = {"user": [16, 8, 4, 0], "item": [16, 8, 4, 2]}
    model = _setup(planted_split, block_dims=widths)
    with caplog.at_level("WARNING", logger="recsys.models.dnis"):
        model.prune()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "user block(s) [3]" in warned[0] and "min_dim=1" in warned[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="recsys.models.dnis"):
        _setup(planted_split, block_dims={"user": [16, 8, 4, 1], "item": [16, 8, 4, 2]}).prune()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_an_unknown_base_names_the_model_base_key(tmp_path):
    from recsys.testing import check_bad_setting_refused

    check_bad_setting_refused("dnis", "model.base=nosuch", "model.base", tmp_path)
