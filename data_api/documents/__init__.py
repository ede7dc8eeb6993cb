"""Document CRUD over a logical database's collections (`spec/crud.md`)."""
