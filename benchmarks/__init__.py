"""predstore's benchmarks: each module measures one capability against its alternatives, in one run."""
