"""Data: readers, the Dataset, preprocessing, splits, samplers, dataset cards, synthetic data."""

from recsys.data.dataset import Dataset, FeatureTable, Vocabulary

__all__ = ["Dataset", "FeatureTable", "Vocabulary"]
