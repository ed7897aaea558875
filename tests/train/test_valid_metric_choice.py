"""The best epoch maximises ``train.valid_metric``, so a descriptive metric (popularity of the
lists, catalogue coverage) cannot be it: selecting on average popularity picked the most
popularity-biased epoch."""

from __future__ import annotations

import pytest

from recsys.cli import main


@pytest.mark.parametrize("metric", ["average_popularity_at_10", "item_coverage_at_20"])
def test_a_descriptive_metric_cannot_select_the_epoch(metric, tmp_path, capsys):
    args = ["train", "-m", "bpr", "--dataset", "synthetic-120x80x2400", "-o", str(tmp_path)]
    args += ["--no-tracking", "--quiet", "--set", f"train.valid_metric={metric}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "train.valid_metric" in err and "describes the recommendations" in err
    assert "recall, recall_min, precision, hit, mrr, ndcg, map" in err
    assert not any(tmp_path.iterdir())  # refused before any run folder
