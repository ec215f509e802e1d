"""The index of a registry: reading run directories and bringing the SQLite cache up to date."""
