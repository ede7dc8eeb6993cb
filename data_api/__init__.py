"""Document CRUD over HTTP (later: datasets, entries, rows).

Implements `spec/crud.md` (issue #5) with the usual router / service / repository
/ schemas / errors split. Nothing here yet but the mounted router.
"""
