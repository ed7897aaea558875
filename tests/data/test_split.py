import numpy as np
import pytest

from recsys.data.dataset import Dataset, Vocabulary
from recsys.data.split import (
    Split,
    SplitConfig,
    make_split,
    ratio_counts,
    split_given,
    split_leave_one_out,
    split_ratio,
    split_temporal,
)
from recsys.errors import DataError


def test_ratio_counts_follow_recbole_arithmetic():
    # RecBole's _calcu_split_ids with ratios 0.8/0.1/0.1:
    # n=20 -> int(2), int(2), rest 16; n=19 -> int(1.9)=1 each, rest 17; n=10 -> 8,1,1
    # n=5 -> int(.5)=0, then test and valid each get one (0 < .5 < 1), train 3
    # n=2 -> test gets one (train 2 > 1), then train is 1 so valid gets none
    # n=1 -> train keeps it
    n = np.array([20, 19, 10, 5, 2, 1])
    expected = [[16, 2, 2], [17, 1, 1], [8, 1, 1], [3, 1, 1], [1, 0, 1], [1, 0, 0]]
    assert ratio_counts(n, (0.8, 0.1, 0.1)).tolist() == expected


def test_ratio_split_sizes_disjoint_and_seeded(planted):
    a = split_ratio(planted, (0.8, 0.1, 0.1), seed=3)
    b = split_ratio(planted, (0.8, 0.1, 0.1), seed=3)
    c = split_ratio(planted, (0.8, 0.1, 0.1), seed=4)
    n = np.diff(planted.interactions.indptr)
    counts = ratio_counts(n, (0.8, 0.1, 0.1))
    for part, col in (("train", 0), ("valid", 1), ("test", 2)):
        assert np.array_equal(np.diff(getattr(a, part).indptr), counts[:, col])
        assert (getattr(a, part) != getattr(b, part)).nnz == 0
    assert (a.test != c.test).nnz > 0
    union = a.train + a.valid + a.test
    assert union.max() == 1 and union.nnz == planted.n_interactions


def test_temporal_split_puts_latest_last(tiny):
    split = split_temporal(tiny, (0.6, 0.2, 0.2))
    # user u0 has items 0..4 at times 0..4: train 0,1,2 valid 3 test 4
    assert split.train[[0]].indices.tolist() == [0, 1, 2]
    assert split.valid[[0]].indices.tolist() == [3]
    assert split.test[[0]].indices.tolist() == [4]


def test_temporal_split_needs_timestamps(tiny):
    tiny.timestamps = None
    with pytest.raises(DataError, match="temporal split needs timestamps"):
        split_temporal(tiny)


def test_leave_one_out_by_time(tiny):
    split = split_leave_one_out(tiny)
    assert split.test[[0]].indices.tolist() == [4]
    assert split.valid[[0]].indices.tolist() == [3]
    assert split.test.nnz == 4 and split.valid.nnz == 4


def test_given_split_carves_validation_from_train_only():
    users = np.repeat(np.arange(3), 10)
    items = np.tile(np.arange(10), 3)
    labels = np.where(items >= 8, 2, 0)
    ds = Dataset.from_arrays(
        "given",
        Vocabulary(["a", "b", "c"]),
        Vocabulary([str(i) for i in range(10)]),
        users,
        items,
        split_labels=labels,
    )
    split = split_given(ds, valid_ratio=0.25, seed=0)
    assert split.test.nnz == 6  # the published test part is kept as is
    assert set(split.test.indices.tolist()) == {8, 9}
    assert split.valid.nnz == 6  # int(0.25 * 8) = 2 per user
    assert not set(split.valid.indices.tolist()) & {8, 9}
    assert split.train.nnz == 18


def test_given_split_without_labels_is_an_error(tiny):
    with pytest.raises(DataError, match="needs a published split"):
        make_split(tiny, SplitConfig(strategy="given"))


def test_split_leaving_a_user_without_training_data_is_an_error():
    ds = Dataset.from_arrays(
        "one",
        Vocabulary(["lonely", "busy"]),
        Vocabulary(["x", "y", "z"]),
        np.array([0, 1, 1, 1]),
        np.array([0, 0, 1, 2]),
        split_labels=np.array([2, 0, 0, 2]),
    )
    with pytest.raises(DataError, match="user 'lonely'.*no training interactions"):
        make_split(ds, SplitConfig(strategy="given"))


def test_split_config_rejects_bad_ratios():
    with pytest.raises(ValueError, match="summing to 1"):
        SplitConfig(ratios=(0.8, 0.3, 0.1))


def test_split_round_trips_through_npz(planted_split, tmp_path):
    planted_split.save(tmp_path / "split.npz")
    back = Split.load(tmp_path / "split.npz")
    for part in ("train", "valid", "test"):
        assert (getattr(back, part) != getattr(planted_split, part)).nnz == 0
