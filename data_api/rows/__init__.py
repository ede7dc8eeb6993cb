"""Timeseries rows and columns of datasets (`spec/rows.md`)."""
