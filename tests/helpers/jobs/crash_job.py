"""A standalone write by several simulated ranks, to be killed at a crash point.

    python tests/helpers/jobs/crash_job.py PATH --ranks 2 --samples 300 --crash shard-write:2

Ranks are StoreWriters in one process, written to in turns (as ranks would
interleave), closed one after the other, then finalized. Every row's values
are a function of its index (tests/helpers/support.py), so any row can be checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

import predstore
from crash_points import arm, die
from predstore.format import layout
from support import batch

# Small shards and parts: a few hundred rows make many commits, so every crash point is reached.
SIZES = {"shard_bytes": 8 * 1200, "chunk_bytes": 2 * 1200, "parquet_max_bytes": 512, "retention": 0}


def rows(index: list[int]) -> dict[str, object]:
    values = batch(index)
    values["mask"] = [
        np.full((int(i) % 3 + 1, 40), int(i) % 251, np.uint8) for i in index
    ]  # ragged, in Zarr
    return values


def run(
    path: str,
    *,
    ranks: int,
    samples: int,
    batch_size: int,
    mode: str,
    die_between_ranks: bool = False,
) -> None:
    """Write indices 0..samples-1, rank r taking those equal to r modulo ranks."""
    write_id = layout.new_write_id()
    writers = [
        predstore.StoreWriter(
            path,
            rank=r,
            world_size=ranks,
            write_id=write_id,
            mode=mode,
            keys={"mask": "zarr"},
            **SIZES,
        )
        for r in range(ranks)
    ]
    mine = [list(range(r, samples, ranks)) for r in range(ranks)]
    for start in range(0, max(len(m) for m in mine), batch_size):
        for writer, indices in zip(writers, mine, strict=True):
            chunk = indices[start : start + batch_size]
            if chunk:
                writer.write(rows(chunk), chunk, names=[f"s{i}" for i in chunk])
    for rank, writer in enumerate(writers):
        writer.close()
        if die_between_ranks and rank == 0 and ranks > 1:
            die()
    if ranks > 1:
        predstore.finalize(path, retention=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--batch", type=int, default=7)
    parser.add_argument("--mode", default="error")
    parser.add_argument("--crash", default="")
    parser.add_argument("--die-between-ranks", action="store_true")
    args = parser.parse_args()
    arm(args.crash)
    run(
        args.path,
        ranks=args.ranks,
        samples=args.samples,
        batch_size=args.batch,
        mode=args.mode,
        die_between_ranks=args.die_between_ranks,
    )


if __name__ == "__main__":
    main()
