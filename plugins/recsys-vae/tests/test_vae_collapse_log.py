"""A collapsed posterior is one warning per training run, then info lines: early epochs of a
short run are often "collapsed" (beta near 0, codes not yet spread), and a warning per epoch
buried the rest of the log."""

from __future__ import annotations

import logging

from recsys_vae import MultVAE

from recsys.train.trainer import TrainConfig, Trainer


def test_collapse_is_one_warning_then_info_lines(vae_split, caplog):
    model = MultVAE(latent_dim=16, hidden_dims=(64,), anneal_cap=50.0, total_anneal_steps=0)
    cfg = TrainConfig(
        epochs=6, batch_size=100, learning_rate=3e-3, patience=1000, progress=False, seed=0
    )
    with caplog.at_level(logging.INFO, logger="recsys_vae"):
        Trainer(model, vae_split, cfg).fit()
    for kind in ("posterior collapse", "after annealing"):
        levels = [r.levelno for r in caplog.records if kind in r.message]
        if levels:
            assert levels == [logging.WARNING] + [logging.INFO] * (len(levels) - 1), kind
    flagged = [r for r in caplog.records if "collapse" in r.message]
    assert len(flagged) >= 4  # flagged on most epochs, warned about once per kind
    assert sum(r.levelno == logging.WARNING for r in flagged) <= 2
