"""What the ranks of one write agree on through the store: its id, and whether all can see it.

Rank 0 starts a write (its rank manifest) and broadcasts the write id; every
other rank checks that it sees that write in the same store, which fails on
node-local disks. A write that never started predicting is removed again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from predstore.format import layout
from predstore.format.fs import filesystem_for

__all__ = ["abandon_write", "new_write_id", "write_is_visible"]

new_write_id = layout.new_write_id


def write_is_visible(
    path: str | os.PathLike[str], write_id: str, storage_options: Mapping[str, Any] | None = None
) -> bool:
    """Whether rank 0's manifest of ``write_id`` can be seen in the store at ``path``."""
    fs = filesystem_for(path, storage_options=storage_options)
    return fs.exists(layout.rank_manifest(write_id, 0))


def abandon_write(
    path: str | os.PathLike[str], write_id: str, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Remove the files of ``write_id``, a write that committed nothing (it never started)."""
    filesystem_for(path, storage_options=storage_options).delete_tree(layout.write_dir(write_id))
