"""Keyword search: the query language and the per-tenant tantivy indexes (`spec/entries.md`)."""
