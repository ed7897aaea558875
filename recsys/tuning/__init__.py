"""Hyper-parameter search with Ray Tune (``recsys tune``).

- :mod:`recsys.tuning.space`: search-space files (typed distributions, validated up front);
- :mod:`recsys.tuning.trainable`: the trial (the Trainer, reporting validation metrics and a
  checkpoint every epoch) and the trial's device choice;
- :mod:`recsys.tuning.callbacks`: driver-side callbacks (trial ledger, MLflow child runs);
- :mod:`recsys.tuning.driver`: the experiment (Ray, scheduler, search algorithm, results).

Importing this package does not import Ray; the submodules that need it import it.
"""

from __future__ import annotations

from recsys.tuning.space import SearchSpace, load_space, parse_space

__all__ = ["SearchSpace", "load_space", "parse_space"]
