"""What the ranks of one write agree on through the store."""

from __future__ import annotations

from pathlib import Path

import predstore
from predstore.format import layout
from predstore.write.ranks import abandon_write, new_write_id, write_is_visible


def test_rank_zero_s_write_is_visible_once_started_and_gone_once_abandoned(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_id = new_write_id()
    assert not write_is_visible(path, write_id)
    writer = predstore.StoreWriter(path, rank=0, world_size=2, write_id=write_id)
    assert write_is_visible(path, write_id)
    writer.fail()
    abandon_write(path, write_id)
    assert not (path / layout.write_dir(write_id)).exists()
    assert not write_is_visible(path, write_id)
