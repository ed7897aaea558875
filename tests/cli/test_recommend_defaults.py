"""`recsys recommend` without ``-k`` gives as many items per user as the run's own
recommendations.csv (the run's ``recommend_k``), not a fixed 10."""

from __future__ import annotations

import io

import pandas as pd

from recsys.cli import main
from recsys.experiment import recommend_run


def test_recommend_defaults_to_the_runs_recommend_k(tmp_path, capsys):
    args = ["train", "--dataset", "synthetic-60x40x900", "--model", "pop"]
    args += ["-o", str(tmp_path), "--no-tracking", "--quiet", "--set", "train.epochs=1"]
    assert main([*args, "--set", "recommend_k=3"]) == 0
    (run,) = (p.parent for p in tmp_path.glob("*/config.yaml"))
    written = pd.read_csv(run / "recommendations.csv")
    assert written.groupby("user").size().eq(3).all()

    capsys.readouterr()
    assert main(["recommend", str(run), "-u", str(written.user.iloc[0])]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(printed) == 3
    assert len(recommend_run(run, users=str(written.user.iloc[0]))) == 3
    # -k still wins
    assert main(["recommend", str(run), "-k", "5", "-u", str(written.user.iloc[0])]) == 0
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 5
