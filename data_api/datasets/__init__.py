"""Datasets, their tags, shares, items and subsets, and their expiry (`spec/datasets.md`)."""
