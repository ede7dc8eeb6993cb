"""Entries: files stored in datasets, with the text extracted from them (`spec/entries.md`)."""
