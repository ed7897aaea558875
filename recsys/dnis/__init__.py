"""DNIS runs from the command line: one search, or a parameters-versus-accuracy report.

The model itself is :class:`recsys.models.dnis.DNIS`; this package drives it through
:func:`recsys.experiment.train_run` and writes the report (:mod:`recsys.dnis.report`).
"""

from recsys.dnis.report import FrontierPoint, run_frontier, run_search, write_report

__all__ = ["FrontierPoint", "run_frontier", "run_search", "write_report"]
