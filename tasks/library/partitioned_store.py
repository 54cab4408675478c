"""Building a `PartitionedTable` from a LanceDB table, and writing and reading its snapshot folder.

`build` reads the table's current version in one streamed scan and partitions its vectors
(`ivf.Ivf`); a large table spills what it holds to memory-mapped scratch files (`_Spill`).
`write` stores every array as .npy and the rows as an Arrow IPC file; `read` maps them back, so
a cold `story search` pages in only what it touches.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from story.tasks.library.columns import TEXT_VECTOR, VISUAL_VECTOR
from story.tasks.library.ivf import (
    IVF_ARRAYS,
    SCREEN_ARRAYS,
    SCREEN_DIMS,
    Ivf,
    half_precision,
    partitions_for,
    unit_rows,
)
from story.tasks.library.partitioned import FORMAT, FTS_ARRAYS, PartitionedTable
from story.tasks.library.postings import Postings, as_array
from story.tasks.library.resident import FILTER_COLUMNS

if TYPE_CHECKING:
    from story.tasks.library.index import ClipIndex

NUMBER_COLUMNS = ("duration", "aspect")
FILE_BATCH_ROWS = 1 << 22
FILE_BATCH_BYTES = 1 << 30
"""The rows file's record batches: up to 4M rows or 1 GB (a string column's offsets are 32-bit,
so a batch must stay under 2 GB); a list's rows are taken batch by batch, so fewer is faster."""


def build(
    index: ClipIndex,
    columns: Sequence[str],
    partitions: int | None = None,
    seed: int = 0,
    scratch: Path | None = None,
    half: bool | None = None,
) -> PartitionedTable:
    """The table's current version, read in one streamed scan, its vectors partitioned.

    With `scratch` (a folder), what the table holds goes to memory-mapped files there
    instead of memory (a table of 10M rows holds 15 GB of caption vectors and 3 GB of rows
    and posting lists), so the page cache, not the process, keeps it; the files are unlinked
    once mapped and vanish when the table is dropped. `half`: hold the vectors in half
    precision, with a SCREEN_DIMS screen for the probe (default: when in float32 they would
    take more than a quarter of this machine's memory, `ivf.half_precision`)."""
    import pyarrow as pa

    table = index.table
    version = int(table.version)
    dims = {
        column: dim
        for column, dim in ((TEXT_VECTOR, index.text_dim), (VISUAL_VECTOR, index.visual_dim))
        if dim is not None and column in index.schema.names
    }
    vector_columns = list(dims)
    plain = [
        c
        for c in dict.fromkeys([*columns, *FILTER_COLUMNS])
        if c in index.schema.names and c not in vector_columns
    ]
    count = index.count()
    if half is None:
        half = half_precision(count, sum(dims.values()))
    dtype = np.float16 if half else np.float32
    folder = Path(tempfile.mkdtemp(prefix="partitioned-", dir=scratch)) if scratch else None
    spill = _Spill(folder)
    try:
        matrices = {c: spill.empty(c, (count, dims[c]), dtype) for c in vector_columns}
        valid = {c: np.zeros(count, bool) for c in vector_columns}
        rows_out = spill.rows(pa.schema([index.schema.field(c) for c in plain]))
        at = 0
        reader = table.search().select(plain + vector_columns).limit(None).to_batches(65_536)
        for batch in reader:
            n = batch.num_rows
            if at + n > count:
                break
            for column in vector_columns:
                values = batch.column(column)
                ok = values.is_valid().to_numpy(zero_copy_only=False)
                flat = values.flatten().to_numpy(zero_copy_only=False)
                block = np.zeros((n, dims[column]), np.float32)
                block[ok] = unit_rows(flat.reshape(-1, dims[column]))
                matrices[column][at : at + n] = block
                valid[column][at : at + n] = ok
            rows_out.append(batch.select(plain))
            at += n
        rows = rows_out.close()
        if at != count:
            raise RuntimeError(f"{index.uri}: the table changed while it was read; search again")
        listed = table.list_indices()
        has_fts = any(ix.columns == ["caption"] for ix in listed)
        parts = partitions or partitions_for(count)
        ivfs = {}
        for column in vector_columns:
            if valid[column].any():
                ivfs[column] = Ivf.build(
                    matrices[column],
                    valid[column],
                    parts,
                    seed,
                    spill.empty,
                    dtype,
                    screen_dims=SCREEN_DIMS if half else 0,
                )
            del matrices[column]  # the inverted file holds its own copy, in partition order
        codes, numbers = _filter_arrays(rows)
        codes = {name: (spill.keep(c), values) for name, (c, values) in codes.items()}
        fts = None
        if has_fts:
            fts = Postings.from_captions(rows.column("caption"))
            fts.rows, fts.weights = spill.keep(fts.rows), spill.keep(fts.weights)
            fts.bitmaps, fts.norm = spill.keep(fts.bitmaps), spill.keep(fts.norm)
        held = PartitionedTable(version, rows, ivfs, codes, numbers, has_fts, fts, index.media_uri)
        for arrays in held.ordered.values():
            for name in arrays:
                arrays[name] = spill.keep(arrays[name])
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return held


def write(table: PartitionedTable, folder: Path, meta: dict[str, Any]) -> None:
    """Every array as .npy, the rows as an Arrow IPC file, and meta.json (with `meta`) last."""
    import pyarrow as pa

    with (
        pa.OSFile(str(folder / "rows.arrow"), "wb") as sink,
        pa.ipc.new_file(sink, table.table.schema) as writer,
    ):
        writer.write_table(table.table)
    screens = []
    for name, ivf in table.ivfs.items():
        for part in IVF_ARRAYS + (SCREEN_ARRAYS if ivf.screened else ()):
            np.save(folder / f"{name}.{part}.npy", getattr(ivf, part))
        if ivf.screened:
            screens.append(name)
    vocabularies = {}
    for name, (codes, vocabulary) in table.codes.items():
        np.save(folder / f"codes.{name}.npy", codes)
        vocabularies[name] = vocabulary
    for name, values in table.numbers.items():
        np.save(folder / f"number.{name}.npy", values)
    for order, arrays in table.ordered.items():
        for name, values in arrays.items():
            np.save(folder / f"{order}.ordered.{name}.npy", values)
    fts = None
    if table.fts is not None:
        for part in FTS_ARRAYS:
            np.save(folder / f"fts.{part}.npy", getattr(table.fts, part))
        (folder / "fts.vocabulary.json").write_text(json.dumps(table.fts.vocabulary))
        fts = {"count": table.fts.count, "documents": table.fts.documents}
    meta = {
        **meta,
        "kind": "partitioned",
        "partitioned_format": FORMAT,
        "ivfs": sorted(table.ivfs),
        "screens": sorted(screens),
        "codes": vocabularies,
        "numbers": sorted(table.numbers),
        "fts": fts,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def read(folder: Path, meta: dict[str, Any], media_uri: Callable[[str], str]) -> PartitionedTable:
    """The table written by `write`, its arrays memory-mapped (pages load as searched)."""
    import pyarrow as pa

    if meta.get("partitioned_format") != FORMAT:
        raise ValueError(f"{folder}: not a partitioned snapshot of format {FORMAT}")

    def array(name: str) -> np.ndarray:
        # Copy-on-write for the vectors and screens: torch maps a writable array without a
        # warning; nothing writes to it, so no page is ever copied.
        # All as plain arrays over the map: np.memmap's indexing costs ~10 us a call
        # in Python, and a query at 10M rows indexes them hundreds of times.
        path = folder / f"{name}.npy"
        if name.endswith((".vectors", ".screen")):
            return np.asarray(np.load(path, mmap_mode="c"))
        return np.asarray(np.load(path, mmap_mode="r"))

    rows = pa.ipc.open_file(pa.memory_map(str(folder / "rows.arrow"))).read_all()
    screens = set(meta.get("screens", []))
    ivfs = {
        name: Ivf(
            **{
                part: array(f"{name}.{part}")
                for part in IVF_ARRAYS + (SCREEN_ARRAYS if name in screens else ())
            }
        )
        for name in meta["ivfs"]
    }
    codes = {name: (array(f"codes.{name}"), list(v)) for name, v in meta["codes"].items()}
    numbers = {name: array(f"number.{name}") for name in meta["numbers"]}
    fts = None
    if meta["fts"] is not None:
        lists = {part: array(f"fts.{part}") for part in FTS_ARRAYS}
        fts = Postings(
            json.loads((folder / "fts.vocabulary.json").read_text()),
            count=meta["fts"]["count"],
            documents=meta["fts"]["documents"],
            **lists,
        )
    ordered = {
        order: {
            **{f"codes.{name}": array(f"{order}.ordered.codes.{name}") for name in codes},
            **{f"number.{name}": array(f"{order}.ordered.number.{name}") for name in numbers},
        }
        for order in ivfs
    }
    return PartitionedTable(
        meta["stamp"]["version"],
        rows,
        ivfs,
        codes,
        numbers,
        meta["has_fts"],
        fts,
        media_uri,
        ordered,
    )


class _Spill:
    """Where a table being built keeps its large arrays: memory, or memory-mapped files in a
    scratch folder (each unlinked once mapped: the mapping keeps its pages)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.files = 0

    def _path(self, name: str) -> Path:
        assert self.folder is not None
        self.files += 1
        return self.folder / f"{self.files}.{name}"

    def empty(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        """An array of `shape` (zeros)."""
        if self.folder is None:
            return np.zeros(shape, dtype)
        path = self._path(f"{name}.npy")
        mapped = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        path.unlink()
        return mapped

    def keep(self, array: np.ndarray) -> np.ndarray:
        """`array`, or a read-only memory map of a copy of it."""
        if self.folder is None:
            return array
        path = self._path("array.npy")
        np.save(path, array)
        mapped = np.asarray(np.load(path, mmap_mode="r"))  # plain: see `read`
        path.unlink()
        return mapped

    def rows(self, schema: Any) -> _Rows:
        return _Rows(schema, None if self.folder is None else self._path("rows.arrow"))


class _Rows:
    """Record batches gathered into one Arrow table: in memory (combined), or written to an IPC
    file and memory-mapped back."""

    def __init__(self, schema: Any, path: Path | None) -> None:
        import pyarrow as pa

        self.schema = schema
        self.path = path
        self.batches: list[Any] = []
        self.sink = pa.OSFile(str(path), "wb") if path is not None else None
        self.writer = pa.ipc.new_file(self.sink, schema) if self.sink is not None else None

    def append(self, batch: Any) -> None:
        self.batches.append(batch)
        rows = sum(b.num_rows for b in self.batches)
        size = sum(b.nbytes for b in self.batches)
        if self.writer is not None and (rows >= FILE_BATCH_ROWS or size >= FILE_BATCH_BYTES):
            self._flush()

    def _flush(self) -> None:
        """The gathered batches as one record batch of the file (a take reads one batch at a
        time: 65,536-row batches made ~150 takes a list at 10M rows, 1M-row batches 10)."""
        import pyarrow as pa

        if self.batches and self.writer is not None:
            joined = pa.Table.from_batches(self.batches, schema=self.schema).combine_chunks()
            self.writer.write_table(joined)
            self.batches = []

    def close(self) -> Any:
        import pyarrow as pa

        if self.writer is None:
            return pa.Table.from_batches(self.batches, schema=self.schema).combine_chunks()
        self._flush()
        self.writer.close()
        assert self.sink is not None and self.path is not None
        self.sink.close()
        rows = pa.ipc.open_file(pa.memory_map(str(self.path))).read_all()
        self.path.unlink()
        return rows


Codes = dict[str, tuple[np.ndarray, list[str]]]


def _filter_arrays(rows: Any) -> tuple[Codes, dict[str, np.ndarray]]:
    """Per string filter column its codes and values; per number column its values (NaN: null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    codes: dict[str, tuple[np.ndarray, list[str]]] = {}
    numbers: dict[str, np.ndarray] = {}
    for name in FILTER_COLUMNS:
        if name not in rows.column_names:
            continue
        column = rows.column(name)
        if name in NUMBER_COLUMNS:
            numbers[name] = column.cast(pa.float64()).fill_null(math.nan).to_numpy()
            continue
        encoded = pc.dictionary_encode(as_array(column))
        size = len(encoded.dictionary)
        # The narrowest type: a probe reads a code of every row it scores.
        narrow = np.int8 if size < 2**7 else np.int16 if size < 2**15 else np.int32
        values = encoded.indices.fill_null(-1).to_numpy().astype(narrow)
        codes[name] = (values, [str(v) for v in encoded.dictionary.to_pylist()])
    return codes, numbers
