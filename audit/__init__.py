"""The append-only, hash-chained audit journal every other app writes to (see audit/README)."""
