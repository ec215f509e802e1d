"""Reading a committed store: analysis through polars, values by index or name."""
