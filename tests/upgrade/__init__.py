"""Upgrades: a data directory written by an earlier release, served by this one."""
