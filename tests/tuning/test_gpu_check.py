"""The prepared GPU check of `recsys tune` (benchmarks/tune_gpu_check.py), run on the CPU path."""

from __future__ import annotations

import pytest

from benchmarks.tune_gpu_check import markdown, most_at_once, run
from tests.tuning.conftest import DATA

pytestmark = pytest.mark.usefixtures("local_ray")


def test_most_at_once_counts_overlapping_spans():
    assert most_at_once([]) == 0
    assert most_at_once([(0, 2), (3, 4)]) == 1
    assert most_at_once([(0, 5), (1, 2), (1.5, 6), (5.5, 7)]) == 3


def test_most_at_once_counts_only_overlaps_beyond_the_stamp_resolution():
    # the spans of a real GPU run: the two short trials may have followed the long ones
    spans = [(794.53, 795.0), (793.52, 794.0), (786.73, 794.0), (786.18, 794.0)]
    assert most_at_once(spans) == 3
    assert most_at_once(spans, resolution_s=1.0) == 2
    assert most_at_once([(0, 3), (2.5, 5)], resolution_s=1.0) == 1


def test_the_check_records_each_trials_device_and_fails_without_a_gpu():
    result = run(gpus_per_trial=0, trials=2, epochs=2, dataset=DATA)
    assert [t["device"] for t in result["trials"]] == ["cpu", "cpu"]
    assert all(t["node_ip"] for t in result["trials"])
    assert result["all_trials_on_gpu"] is False and result["check_passed"] is False
    # every trial's span is recorded; the count at the stamps' one-second resolution can be 0
    # when trials this small finish within a second, so count the raw spans
    spans = [t["span_s"] for t in result["trials"]]
    assert all(span is not None and span[1] > span[0] for span in spans)
    assert most_at_once(spans) >= 1
    assert result["most_trials_at_once"] == most_at_once(spans, resolution_s=1.0)
    text = markdown(result)
    assert "| cpu |" in text and "Check passed: **False**" in text
