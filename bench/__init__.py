"""Benchmarks that print figures (not tests): `make bench` runs them all.

Each benchmark measures Quarry through its HTTP API and the raw PyMongo driver
against the same engine in the same run, and reports medians and the ratio;
these machines are shared and noisy, so single runs are not compared across days.
"""
