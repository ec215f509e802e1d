"""Queries over the SQLite cache, returning polars DataFrames; fields and exports."""
