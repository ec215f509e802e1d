"""Writing a store: batches in, Parquet parts, Zarr arrays and rank manifests out."""
