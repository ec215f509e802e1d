"""One loose file per row: a key's values exported as ``.pt``, ``.npy``, ``.png`` or ``.txt`` files.

For the tools that want one file per sample (a challenge's submission
system, an image or medical viewer, ``diff``), after the fact and without
per-sample files at predict time. Everything that can be refused is refused
before the first file is written: the key, a format that does not fit its
dtype or shape, file names that collide, an output folder that already
holds files (unless ``existing`` says what to do) or cannot be written.

Each file is written under a temporary name that keeps the final suffix (so
a writer that picks its format from the extension works), then renamed: a
killed export leaves complete files only, and ``existing="skip"`` finishes
it. Names come from the rows' names made safe (rows without a name, or
``file_names="index"``, are named by index); nothing is ever written outside
the output folder.

Example::

    store = predstore.open("preds.pstore")
    store.export_files("mask", "masks/", writer="png", where="prob > 0.5")
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from predstore.errors import ConfigError, SchemaError, StoreExistsError
from predstore.format import dtypes
from predstore.format.dtypes import NDArray
from predstore.format.png import encode_png
from predstore.format.schema import DATALOADER, INDEX, KeySchema
from predstore.read.filters import where_expr
from predstore.read.images import check_image, to_image

if TYPE_CHECKING:
    from predstore.read.store import Store

FileWriter = Callable[[str, Any], None]
"""A writer ``fn(path, value)`` that writes one row's value to ``path``."""
Existing = Literal["error", "overwrite", "skip"]
FileNames = Literal["name", "index"]

FORMATS = ("pt", "npy", "png", "txt")
MAX_NAME_BYTES = 200  # a file name may hold 255 bytes: room for a suffix and the temporary part
_PARTIAL = ".predstore-partial-"
_UNSAFE = re.compile(
    r"[^\w.\-+=@,()\[\] ]"
)  # \w is Unicode-aware: letters and digits of any script


@dataclass(frozen=True)
class ExportedFiles:
    """What :func:`export_files` did: files written, rows skipped because their file existed, null rows."""

    written: int
    skipped: int
    null: int
    out_dir: str


def export_files(
    store: Store,
    key: str,
    out_dir: str | os.PathLike[str],
    *,
    writer: str | FileWriter = "npy",
    suffix: str | None = None,
    indices: Sequence[int] | NDArray | None = None,
    names: Sequence[str] | None = None,
    where: str | None = None,
    dataloader_idx: int = 0,
    file_names: FileNames = "name",
    existing: Existing = "error",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportedFiles:
    """Write one file per selected row of ``key`` into ``out_dir``: see :meth:`Store.export_files`."""
    spec = store._spec(key)
    write, suffix = _writer(writer, suffix, key, spec)
    if file_names not in ("name", "index"):
        raise ConfigError(f"file_names must be 'name' or 'index', got {file_names!r}")
    if existing not in ("error", "overwrite", "skip"):
        raise ConfigError(f"existing must be 'error', 'overwrite' or 'skip', got {existing!r}")
    positions = _select(store, indices, names, where, dataloader_idx)
    files = _file_names(store, positions, file_names, suffix, dataloader_idx)
    folder = _prepare(Path(out_dir), existing)
    if existing == "skip":
        keep = np.array([not (folder / f).exists() for f in files], dtype=bool)
        positions, files = positions[keep], [f for f, k in zip(files, keep, strict=True) if k]
    skipped = int(len(keep) - keep.sum()) if existing == "skip" else 0
    null = _write_all(store, key, spec, positions, files, folder, write, suffix, workers, progress)
    return ExportedFiles(len(files) - null, skipped, null, str(folder))


# -- formats ------------------------------------------------------------------


def _writer(
    writer: str | FileWriter, suffix: str | None, key: str, spec: KeySchema
) -> tuple[FileWriter, str]:
    if callable(writer):
        return writer, suffix or ""
    if writer not in FORMATS:
        raise ConfigError(
            f"writer must be one of {', '.join(FORMATS)} or a callable fn(path, value), "
            f"got {writer!r}"
        )
    what = f"key {key!r} ({spec.describe()})"
    if writer == "png":
        check_image(spec.shape, spec.dtype, key=key)
    elif writer == "txt" and spec.shape:
        raise SchemaError(
            f"{what} is not a string or scalar, which is what txt holds; "
            "export it as npy or pt, or pass a writer"
        )
    elif writer in ("pt", "npy") and spec.dtype == dtypes.STRING:
        raise SchemaError(f"{what} holds strings; export it as txt")
    elif writer == "npy" and dtypes.get(spec.dtype).zarr != dtypes.get(spec.dtype).numpy:
        raise SchemaError(
            f"{what}: a .npy file cannot hold {spec.dtype} (numpy writes it as raw bytes); "
            "export it as pt, which keeps the dtype"
        )
    return _BUILTIN[writer](key), suffix or f".{writer}"


def _pt(key: str) -> FileWriter:
    import torch

    from predstore.read.values import to_torch

    def write(path: str, value: Any) -> None:
        # A copy: torch.save of a view would save the whole block it views.
        torch.save(to_torch(np.array(value, copy=True), key=key), path)

    return write


def _npy(key: str) -> FileWriter:
    return lambda path, value: np.save(path, np.asarray(value), allow_pickle=False)


def _png(key: str) -> FileWriter:
    def write(path: str, value: Any) -> None:
        encoded = encode_png(to_image(value, key=key), level=1)
        with open(path, "wb") as file:
            file.write(encoded)

    return write


def _txt(key: str) -> FileWriter:
    def write(path: str, value: Any) -> None:
        text = value if isinstance(value, str) else str(np.asarray(value).item())
        Path(path).write_text(text + "\n", encoding="utf-8")

    return write


_BUILTIN: dict[str, Callable[[str], FileWriter]] = {
    "pt": _pt,
    "npy": _npy,
    "png": _png,
    "txt": _txt,
}


# -- rows and their file names ----------------------------------------------------


def _select(
    store: Store,
    indices: Sequence[int] | NDArray | None,
    names: Sequence[str] | None,
    where: str | None,
    dataloader_idx: int,
) -> NDArray:
    """Row positions in the order asked (index order without ``indices`` or ``names``)."""
    positions = store._positions(indices, names, dataloader_idx)
    if where is None:
        return positions
    frame = store.scan(sort=True).filter(pl.col(DATALOADER) == dataloader_idx)
    kept = frame.filter(where_expr(where, frame.collect_schema().names()))
    try:
        wanted = kept.select(INDEX).collect().get_column(INDEX).to_numpy()
    except pl.exceptions.PolarsError as e:
        from predstore.errors import QueryError

        reason = str(e).strip().splitlines()[0]
        raise QueryError(f"the filter {where!r} cannot be applied: {reason}") from None
    return positions[np.isin(store.rows.index[positions], wanted)]


def safe_file_name(name: str) -> str:
    """``name`` as one file name that stays in its folder: no separators, NUL, leading dots or excess length."""
    text = unicodedata.normalize("NFC", name)
    safe = _UNSAFE.sub("_", text).strip(" ").lstrip(".") or "_"
    if len(safe.encode()) > MAX_NAME_BYTES:  # keep names distinct: a digest of the whole name
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        head = safe.encode()[: MAX_NAME_BYTES - 17].decode("utf-8", "ignore")
        safe = f"{head}-{digest}"
    return safe


def _file_names(
    store: Store, positions: NDArray, file_names: FileNames, suffix: str, dataloader_idx: int
) -> list[str]:
    indices = store.rows.index[positions].tolist()
    if file_names == "name" and store.schema.names:
        row_names = store.rows.names(positions)
    else:
        row_names = [None] * len(indices)
    files: list[str] = []
    first: dict[str, int] = {}
    for at, (index, name) in enumerate(zip(indices, row_names, strict=True)):
        stem = str(index) if name is None else safe_file_name(str(name))
        file = stem + suffix
        if os.sep in file or file.startswith("."):  # never: safe names have neither
            raise ConfigError(f"file name {file!r} would leave the output folder")
        # Compared without case: macOS and Windows disks would write both rows to one file.
        other = first.setdefault(file.casefold(), at)
        if other != at:
            raise ConfigError(
                f"rows {_describe(indices[other], row_names[other])} and "
                f"{_describe(index, name)} of dataloader {dataloader_idx} would both be written "
                f"to {files[other]!r} (file names that differ only in case are one file on "
                "macOS and Windows); export with file_names='index' (--file-names index), "
                "or select one of them"
            )
        files.append(file)
    return files


def _describe(index: int, name: str | None) -> str:
    return f"index {index}" if name is None else f"index {index} (name {name!r})"


# -- the output folder and the writes ---------------------------------------------


def _prepare(folder: Path, existing: Existing) -> Path:
    """The output folder, created, writable, and empty unless ``existing`` allows files."""
    if folder.exists() and not folder.is_dir():
        raise StoreExistsError(f"{folder} is a file; the output must be a folder")
    folder.mkdir(parents=True, exist_ok=True)
    entries = [e for e in os.listdir(folder) if _PARTIAL not in e]
    if entries and existing == "error":
        raise StoreExistsError(
            f"{folder} already holds {len(entries)} file(s) (such as {sorted(entries)[0]!r}); "
            "pass existing='overwrite' or 'skip' (--overwrite, --skip-existing), "
            "or choose an empty folder"
        )
    probe = folder / f"{_PARTIAL}probe-{secrets.token_hex(4)}"
    probe.touch()  # an OSError here means the folder cannot be written
    probe.unlink()
    for stale in os.listdir(folder):  # temporary files of a killed export
        if stale.startswith(".") and _PARTIAL in stale:
            (folder / stale).unlink(missing_ok=True)
    return folder.resolve()


def _write_all(
    store: Store,
    key: str,
    spec: KeySchema,
    positions: NDArray,
    files: list[str],
    folder: Path,
    write: FileWriter,
    suffix: str,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> int:
    """Write every file, values read a block of rows at a time; return the number of null rows."""
    null, done = 0, 0
    if progress is not None:
        progress(0, len(positions))
    threads = workers or min(8, (os.cpu_count() or 1) + 2)
    directory = os.fspath(folder)
    with ThreadPoolExecutor(threads, thread_name_prefix="predstore-files") as pool:
        for start, values in _blocks(store, key, spec, positions):
            mask = np.ma.getmaskarray(values) if isinstance(values, np.ma.MaskedArray) else None
            jobs = []
            for offset in range(len(values)):
                if mask is not None and mask[offset].any():
                    null += 1
                    continue
                file = files[start + offset]
                jobs.append(pool.submit(_write_one, write, directory, file, suffix, values[offset]))
            for job in jobs:
                job.result()
            done += len(values)
            if progress is not None:
                progress(done, len(positions))
    return null


def _blocks(
    store: Store, key: str, spec: KeySchema, positions: NDArray
) -> Iterator[tuple[int, Any]]:
    """(first position's offset, values) for blocks of about 64 MiB of rows."""
    rows = max(1, min(4096, (64 << 20) // max(1, spec.row_bytes)))
    for start in range(0, len(positions), rows):
        yield start, store._gather_at(key, spec, positions[start : start + rows])


def _write_one(write: FileWriter, folder: str, file: str, suffix: str, value: Any) -> None:
    """``write`` to a temporary name in the same folder with the same suffix, then rename."""
    # Plain strings, not Paths: building two Paths per file costs as much as encoding a mask.
    stem = file[: len(file) - len(suffix)]
    temp = os.path.join(folder, f".{stem}{_PARTIAL}{secrets.token_hex(4)}{suffix}")
    try:
        write(temp, value)
        os.replace(temp, os.path.join(folder, file))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
