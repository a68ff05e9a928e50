"""The top-level ``fixtures/``: each file loaded through the surface it is sample data for."""
