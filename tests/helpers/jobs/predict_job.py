"""A predict job run as its own process (DDP re-launches it once per rank).

    python tests/helpers/jobs/predict_job.py PATH --devices 2 --samples 11 --batch 3 --shuffle

Prints one JSON line on rank 0 when predict returns: rows, coverage, warnings.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Subset

import predstore
import predstore.lightning.prediction_writer  # loaded before crash points are armed
from crash_points import arm
from predict_support import Samples, StreamOfSamples, Teacher


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument(
        "--num-nodes", type=int, default=1, help="with NODE_RANK, MASTER_ADDR, MASTER_PORT set"
    )
    parser.add_argument("--samples", type=int, default=11)
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--mode", default="error")
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--fail-at", type=int, default=None)
    parser.add_argument("--dataset", choices=["map", "subset", "iterable"], default="map")
    parser.add_argument(
        "--rank-path", action="store_true", help="each rank writes under PATH/rank<r> (not shared)"
    )
    parser.add_argument(
        "--crash", default="", help="a crash point KIND:COUNT (tests/helpers/crash_points.py)"
    )
    args = parser.parse_args()
    arm(args.crash)

    trainer = pl.Trainer(
        accelerator="cpu",
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy="ddp" if args.devices * args.num_nodes > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[],
    )
    # Unseeded ranks draw their own shuffle order; seed them apart, so that runs repeat.
    torch.manual_seed(1000 + trainer.global_rank)
    path = f"{args.path}/rank{trainer.global_rank}" if args.rank_path else args.path
    index_key = "index" if args.dataset == "iterable" else None
    writer = predstore.PredictionWriter(
        path, name_key="case", index_key=index_key, mode=args.mode, strict=args.strict
    )
    trainer.callbacks.append(writer)
    if args.dataset == "iterable":
        dataset = StreamOfSamples(args.samples, trainer.global_rank, trainer.world_size)
    elif args.dataset == "subset":
        dataset = Subset(Samples(args.samples * 2), list(range(1, args.samples * 2, 2)))
    else:
        dataset = Samples(args.samples)
    loader = DataLoader(dataset, batch_size=args.batch, shuffle=args.shuffle)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = Teacher(fail_at=args.fail_at, with_index=index_key is not None)
        trainer.predict(model, loader, return_predictions=False)
    if trainer.global_rank == 0:
        manifest = writer.manifest
        assert manifest is not None
        print(
            json.dumps(
                {
                    "rows": manifest.rows,
                    "coverage": {
                        str(k): {f: getattr(c, f) for f in c.__struct_fields__}
                        for k, c in manifest.coverage.items()
                    },
                    "warnings": [
                        str(w.message) for w in caught if "PredictionWriter" in str(w.message)
                    ],
                }
            )
        )


if __name__ == "__main__":
    main()
