"""Append generation after generation to a store, for readers to watch.

python tests/helpers/jobs/append_job.py PATH --generations 25 --rows 30
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import predstore
from jobs.crash_job import rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--generations", type=int, default=25)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--overwrite-every", type=int, default=0)
    args = parser.parse_args()
    for g in range(args.generations):
        overwrite = args.overwrite_every and g % args.overwrite_every == args.overwrite_every - 1
        indices = list(range(g * args.rows, (g + 1) * args.rows))
        with predstore.StoreWriter(
            args.path,
            mode="overwrite" if overwrite else "append",
            keys={"mask": "zarr"},
            shard_bytes=8 * 1200,
            retention=0.5,
        ) as writer:
            for start in range(0, len(indices), 7):
                chunk = indices[start : start + 7]
                writer.write(rows(chunk), chunk)


if __name__ == "__main__":
    main()
