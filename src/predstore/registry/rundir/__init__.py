"""A run directory's files: names, formats, JSON Schemas, and the rules that read them."""
