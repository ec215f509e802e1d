"""Loose files on demand: exporting masks from a store as one PNG per sample, against the
per-sample ``torch.save`` loop that writers ran at predict time.

    python -m benchmarks.loose_files [--masks 10000] [--size 64] [--reps 3]

Contenders, each timed from an empty output folder to the last file renamed
into place, in a forked child per repetition (figures are medians, files/s):

- ``torch.save`` loop: what a per-sample writer did at predict time, one
  ``torch.save(mask, f"{name}.pt")`` per sample (the cost per file that
  ``export --files`` must not exceed);
- Pillow PNG loop: a hand-written loop, ``Image.fromarray(mask).save(...)``
  per sample, one thread (what a user would write without predstore);
- predstore PNG: ``predstore.open(store).export_files("mask", out, writer="png")``,
  opening the store included (atomic renames, safe names, parallel writes);
- predstore npy and pt: the same export in the other formats.

The store is written once, before any timing. Masks are filled discs of
random centres and radii (what segmentation masks look like), bool, named
``case-00000`` onwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import WORK, machine, median_of, run_forked, table, timed, warm_page_cache

CONTENDERS = (
    "torch_save_loop",
    "pillow_png_loop",
    "predstore_png",
    "predstore_npy",
    "predstore_pt",
)
TITLES = {
    "torch_save_loop": "one `torch.save` per sample (at predict time)",
    "pillow_png_loop": "Pillow PNG loop, one thread",
    "predstore_png": "**predstore** `export --files png`",
    "predstore_npy": "**predstore** `export --files npy`",
    "predstore_pt": "**predstore** `export --files pt`",
}


def masks(count: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    centres = rng.uniform(0, size, (count, 2))
    radii = rng.uniform(size / 8, size / 3, count)
    return ((y - centres[:, 0, None, None]) ** 2 + (x - centres[:, 1, None, None]) ** 2) < (
        radii[:, None, None] ** 2
    )


def names(count: int) -> list[str]:
    return [f"case-{i:05d}" for i in range(count)]


def write_store(path: Path, values: np.ndarray) -> None:
    import predstore

    with predstore.StoreWriter(path, mode="overwrite") as writer:
        for start in range(0, len(values), 256):
            rows = list(range(start, min(start + 256, len(values))))
            writer.write(
                {"mask": values[rows]}, rows, names=names(len(values))[start : rows[-1] + 1]
            )


def _torch_save_loop(store: Path, values: np.ndarray, out: Path) -> None:
    import torch

    tensors = torch.from_numpy(values)
    for name, mask in zip(names(len(values)), tensors, strict=True):
        torch.save(mask.clone(), out / f"{name}.pt")


def _pillow_png_loop(store: Path, values: np.ndarray, out: Path) -> None:
    from PIL import Image

    for name, mask in zip(names(len(values)), values, strict=True):
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / f"{name}.png", format="PNG")


def _predstore(writer: str) -> Callable[[Path, np.ndarray, Path], None]:
    def export(store: Path, values: np.ndarray, out: Path) -> None:
        import predstore

        predstore.open(store).export_files("mask", out, writer=writer)

    return export


RUNNERS: dict[str, Callable[[Path, np.ndarray, Path], None]] = {
    "torch_save_loop": _torch_save_loop,
    "pillow_png_loop": _pillow_png_loop,
    "predstore_png": _predstore("png"),
    "predstore_npy": _predstore("npy"),
    "predstore_pt": _predstore("pt"),
}


def measure(contender: str, store: Path, values: np.ndarray, out: Path) -> dict[str, Any]:
    """One repetition: the files written, checked, and the figures."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    seconds, _ = timed(lambda: RUNNERS[contender](store, values, out))
    files = sorted(out.iterdir())
    check(contender, files, values)
    return {
        "seconds": seconds,
        "files": len(files),
        "files_per_s": len(files) / seconds,
        "bytes": sum(f.stat().st_size for f in files),
    }


def check(contender: str, files: list[Path], values: np.ndarray) -> None:
    """Every sample has its file under its name, and a sample's file holds its mask."""
    expected = names(len(values))
    if [f.stem for f in files] != expected:
        raise AssertionError(f"{contender}: files are not one per sample, named by name")
    for at in (0, len(values) // 2, len(values) - 1):
        path = files[at]
        if path.suffix == ".png":
            from PIL import Image

            loaded = np.asarray(Image.open(path)) > 0
        elif path.suffix == ".npy":
            loaded = np.load(path)
        else:
            import torch

            loaded = torch.load(path).numpy()
        if not np.array_equal(loaded, values[at]):
            raise AssertionError(f"{contender}: {path.name} does not hold its mask")


def run(count: int, size: int, reps: int, work: Path, contenders: list[str]) -> dict[str, Any]:
    import torch  # noqa: F401
    from PIL import Image  # noqa: F401

    import predstore  # noqa: F401  (imported before forking: every child starts warm)

    work.mkdir(parents=True, exist_ok=True)
    warm_page_cache(256, work)
    values = masks(count, size)
    store = work / "masks.pstore"
    run_forked(write_store, store, values)
    results: dict[str, Any] = {}
    for contender in contenders:
        runs = []
        for _ in range(reps):
            result = run_forked(measure, contender, store, values, work / "out")
            if "error" in result:
                raise RuntimeError(f"{contender} failed: {result['error']}")
            runs.append(result)
        results[contender] = median_of(runs)
        print(f"{contender}: {results[contender]['files_per_s']:,.0f} files/s", file=sys.stderr)
    shutil.rmtree(work / "out", ignore_errors=True)
    return {"masks": count, "size": size, "reps": reps, "machine": machine(), "results": results}


def report(measured: dict[str, Any]) -> str:
    results = measured["results"]
    floor = results.get("torch_save_loop", {}).get("files_per_s")
    rows = []
    for contender, figures in results.items():
        ratio = f"{figures['files_per_s'] / floor:.2f}x" if floor else ""
        rows.append(
            [
                TITLES[contender],
                f"{figures['files_per_s']:,.0f}",
                f"{figures['seconds']:.2f} s",
                f"{figures['bytes'] / 1e6:.1f} MB",
                ratio,
            ]
        )
    header = ["contender", "files/s", "time", "bytes", "files/s vs torch.save loop"]
    return table(rows, header)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loose_files", description=__doc__)
    parser.add_argument("--masks", type=int, default=10_000, help="samples (10,000)")
    parser.add_argument("--size", type=int, default=64, help="mask height and width (64)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (3)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help=",".join(CONTENDERS))
    parser.add_argument("--work", type=Path, default=WORK / "loose_files", help="scratch directory")
    args = parser.parse_args(argv)
    contenders = [c for c in args.contenders.split(",") if c]
    measured = run(args.masks, args.size, args.reps, args.work, contenders)
    print(report(measured))
    print(json.dumps(measured))


if __name__ == "__main__":
    main()
