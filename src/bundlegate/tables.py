"""Tables on disk, read and written in chunks: CSV, Parquet and JSON lines (``bundle predict``).

    reader = open_reader(Path("in.csv"), "csv", chunk_rows=50_000)
    for chunk in reader:               # Chunk(frame, errors, done): a pandas frame of up to chunk_rows
        ...                            # reader.total / chunk.done: progress in reader.unit (rows or bytes)
    with open_writer(Path("out.parquet"), "parquet", types) as writer:
        writer.write(frame)

CSV is read by pyarrow as text: every column a string column, an empty cell a null (the scorer parses
the numbers of numeric features, ``bundlegate.offline``), so columns pass through as they were
written. JSON lines are parsed one line at a
time with orjson, values kept as JSON gave them; a line that is not a JSON object becomes an empty row
with its problem in ``Chunk.errors``. Parquet is read by row groups' batches with pyarrow.

Writers create the output atomically (a hidden temporary file in the same directory, renamed on a
clean close) so a failed run leaves no half-written table. A Parquet file's schema is fixed by the first
chunk; ``types`` names the type of columns that chunk cannot tell (all empty).
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import orjson

from bundlegate.errors import TableError

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet", "jsonl")
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def table_format(path: Path, given: str | None = None) -> str:
    """``given``, else the format the file name says (``TableError`` when it says none)."""
    if given is not None:
        return given
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise TableError(f"{path.name}: cannot tell the format from the name; use .csv, .parquet or .jsonl")
    return fmt


@dataclass(frozen=True, slots=True)
class Chunk:
    """Up to ``chunk_rows`` rows; ``errors`` per row (None: read fine); ``done``: progress so far."""

    frame: pd.DataFrame
    errors: list[str | None] | None
    done: int


class TableReader:
    """The chunks of one table (iterate once); ``total`` and ``unit`` size the progress bar."""

    def __init__(self, chunks: Iterator[Chunk], total: int, unit: str) -> None:
        self._chunks = chunks
        self.total = total
        self.unit = unit

    def __iter__(self) -> Iterator[Chunk]:
        return self._chunks


def open_reader(path: Path, fmt: str, *, chunk_rows: int) -> TableReader:
    """A reader of ``path`` in ``fmt`` (see the module docstring)."""
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as e:  # pyarrow's own error types
            raise TableError(f"{path.name}: not a Parquet file ({_short(e)})") from None
        return TableReader(_parquet_chunks(parquet, chunk_rows), parquet.metadata.num_rows, "rows")
    size = path.stat().st_size
    if fmt == "csv":
        return TableReader(_csv_chunks(path, chunk_rows), size, "bytes")
    if fmt == "jsonl":
        return TableReader(_jsonl_chunks(path, chunk_rows), size, "bytes")
    raise TableError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")


def _parquet_chunks(parquet: Any, chunk_rows: int) -> Iterator[Chunk]:
    done = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        done += batch.num_rows
        yield Chunk(batch.to_pandas(), None, done)


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    """CSV read by pyarrow as text: every column a string column, an empty cell a null."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise TableError(f"{path.name}: the CSV table has no header line")
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True, null_values=[""]
    )
    with open(path, "rb") as f:
        try:
            reader = pacsv.open_csv(f, convert_options=convert)
            pending: list[Any] = []
            rows = 0
            for batch in reader:
                pending.append(batch)
                rows += batch.num_rows
                while rows >= chunk_rows:
                    table = pa.Table.from_batches(pending)
                    yield Chunk(table.slice(0, chunk_rows).to_pandas(), None, f.tell())
                    rest = table.slice(chunk_rows)
                    pending, rows = rest.to_batches(), rest.num_rows
            if rows:
                yield Chunk(pa.Table.from_batches(pending).to_pandas(), None, f.tell())
        except (pa.ArrowInvalid, UnicodeDecodeError) as e:
            raise TableError(f"{path.name}: cannot read the CSV table ({_short(e)})") from None


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    import pandas as pd

    with open(path, "rb") as f:
        records: list[dict[str, Any]] = []
        errors: list[str | None] = []
        for line in f:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                problem = None if isinstance(record, dict) else "the line is not a JSON object"
            except orjson.JSONDecodeError:
                record, problem = {}, "the line is not valid JSON"
            records.append(record if problem is None else {})
            errors.append(problem)
            if len(records) >= chunk_rows:
                yield Chunk(_object_frame(pd, records), errors, f.tell())
                records, errors = [], []
        if records:
            yield Chunk(_object_frame(pd, records), errors, f.tell())


def _object_frame(pd: Any, records: list[dict[str, Any]]) -> pd.DataFrame:
    """Records as object columns: every value stays the Python value JSON gave (no NaN for null)."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    columns = {name: pd.Series([r.get(name) for r in records], dtype=object) for name in names}
    return pd.DataFrame(columns, index=range(len(records)))


# ---------------------------------------------------------------------------------------------- writing


class TableWriter:
    """Writes frames to a hidden temporary file; ``close`` renames it into place (see the module)."""

    def __init__(self, path: Path, fmt: str, types: dict[str, str]) -> None:
        if fmt not in FORMATS:
            raise TableError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.path = path
        self.fmt = fmt
        self.types = types
        self._tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
        self._file: IO[bytes] | None = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()
        self._parquet: Any = None
        self._schema: Any = None
        self._rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        assert self._file is not None, "write after close"
        if self.fmt == "csv":
            self._write_csv(frame)
        elif self.fmt == "jsonl":
            lines = [orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY, default=str) for r in _records(frame)]
            if lines:
                self._file.write(b"\n".join(lines) + b"\n")
        else:
            self._write_parquet(frame)
        self._rows += len(frame)

    def _write_csv(self, frame: pd.DataFrame) -> None:
        """float32 columns (the answers) with the digits JSON gives them, the rest as pyarrow writes it;
        pandas' writer for what Arrow cannot hold (a JSON line's nested values)."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        assert self._file is not None
        floats = {str(c): _json_numbers(frame[c]) for c in frame.columns if frame[c].dtype == "float32"}
        frame = frame.assign(**floats)
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            frame.to_csv(self._file, header=self._rows == 0, index=False, lineterminator="\n")
            return
        options = pacsv.WriteOptions(include_header=self._rows == 0, quoting_style="needed")
        pacsv.write_csv(table, self._file, write_options=options)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._schema is None:
            schema = pa.Table.from_pandas(frame, preserve_index=False).schema
            fields = [
                pa.field(f.name, pa.type_for_alias(self.types.get(f.name, "string")))
                if pa.types.is_null(f.type)
                else f
                for f in schema
            ]
            self._schema = pa.schema(fields)
            # dictionary pages only for text: on float columns they cost time and bytes
            text = [f.name for f in fields if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            self._parquet = pq.ParquetWriter(self._file, self._schema, use_dictionary=text)
        try:
            table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise TableError(
                f"a chunk does not fit the Parquet schema of the first one ({_short(e)})"
            ) from None
        self._parquet.write_table(table)

    def close(self, ok: bool = True) -> None:
        """Finish the file and rename it into place (``ok``), or remove it."""
        if self._file is None:
            return
        try:
            if self._parquet is not None:
                self._parquet.close()
            elif ok and self.fmt == "parquet":  # no chunk at all: an empty table still has a file
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({}), self._file)
            self._file.close()
            self._file = None
            if ok:
                os.replace(self._tmp, self.path)
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None
            with contextlib.suppress(FileNotFoundError):
                if not ok:
                    os.unlink(self._tmp)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(ok=kind is None)


def open_writer(path: Path, fmt: str, types: dict[str, str] | None = None) -> TableWriter:
    """A writer of ``path`` in ``fmt`` (see ``TableWriter``)."""
    return TableWriter(path, fmt, types or {})


def _records(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Rows as dicts; a missing value of a typed column (NaN, NA) is a JSON null."""
    names = [str(c) for c in frame.columns]
    columns = [
        list(frame[c].to_numpy())  # numpy floats: float32 keeps its digits, NaN is written null
        if frame[c].dtype.kind == "f"
        else frame[c].astype(object).where(frame[c].notna(), None).tolist()
        for c in frame.columns
    ]
    for values in zip(*columns, strict=True):
        yield dict(zip(names, values, strict=True))


def _json_numbers(column: pd.Series[Any]) -> list[str | None]:
    """A float column as the numbers JSON would print (float32 with its own shortest digits, as the
    gateway's answers); None for a missing value."""
    text = orjson.dumps(column.to_numpy(), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode()
    return [None if t == "null" else t for t in text.split(",")] if text else []


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "…"
