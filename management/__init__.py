"""Logical databases, schema-defined collections, import and export.

Implements `spec/management.md` (issue #4) with the usual router / service /
repository / schemas / errors split. Nothing here yet but the mounted router.
"""
