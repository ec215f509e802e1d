"""The on-disk format of a store and its commit protocol.

This package knows files and manifests, not tensors: the writer and the
reader are built on it, and it depends on neither.
"""
