"""Offline scoring: a table of rows through one bundle version, the way the gateway would answer them.

``Scorer`` holds what the gateway holds for a version (``read_bundle`` with digest checks,
``runtime.load_model``'s onnxruntime session, the ``CompiledSchema`` and its answers) and scores
pandas frames with it::

    scorer = Scorer.open(Path("bundles/iris/1"))
    result = scorer.score(frame)       # prediction, probability_<class>..., error (one row per input row)

Each feature column goes through ``CompiledSchema.from_columns`` exactly as a ``/v1`` columns batch
does, so a value the gateway answers 422 for is refused here with the same message. A refused row gets
its problems in the ``error`` column and empty outputs; the other rows are scored (``fail_fast`` raises
``InvalidRows`` instead, with the row's position in the frame). Answers are the gateway's
``Answers.encode_batch``: the same labels, and float32 numbers that print with the same shortest digits.

A table holds more than the features (ids, dates): columns the model does not take are left alone.
CSV text keeps what JSON could say: a numeric feature's column is parsed in one go when every cell is
a number or empty, else cell by cell (a cell that is not a number reaches the schema as text and is
refused as in JSON); an empty cell is a null, ``true``/``false`` are booleans. Missing values of typed
columns (NaN, None) are nulls too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from bundlegate.answers import Answers, json_key
from bundlegate.bundle import read_bundle
from bundlegate.decoding import DEFAULT_MAX_STRING_LENGTH, CompiledSchema
from bundlegate.errors import InvalidInput, InvalidRows, Problem, TableError, problem
from bundlegate.feed import Feed
from bundlegate.manifest import Manifest
from bundlegate.runtime import Model, load_model

if TYPE_CHECKING:
    import pandas as pd

PREDICTION = "prediction"
ERROR = "error"
PROBABILITY_PREFIX = "probability_"
_FLOATS = frozenset({"float32", "float64"})
_NUMERIC = frozenset({"float32", "float64", "int64"})
_BLOCK_ROWS = 64  # a chunk with many bad rows is re-checked in blocks this size
_WHOLE_CHUNK_ROUNDS = 3  # rounds of dropping the reported rows before blocks
_MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class Scorer:
    """One bundle version ready to score frames (see the module docstring)."""

    manifest: Manifest
    schema: CompiledSchema
    answers: Answers
    model: Model
    fail_fast: bool = False

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        ort_threads: int = 1,
        allow_pickle: bool = False,
        max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
        fail_fast: bool = False,
    ) -> Scorer:
        """Read and verify the bundle directory ``path`` and load its model (``BundleError``)."""
        bundle = read_bundle(Path(path), verify=True)
        manifest = bundle.manifest
        model = load_model(bundle, ort_threads=ort_threads, allow_pickle=allow_pickle)
        # a frame is one "request": its size is the reader's chunk, not the gateway's request limit
        schema = CompiledSchema(manifest, max_rows=2**62, max_string_length=max_string_length)
        return cls(manifest, schema, Answers(manifest), model, fail_fast)

    @property
    def output_columns(self) -> list[str]:
        """The columns ``score`` returns, in order."""
        label = self.manifest.outputs.label
        classes = label.classes if label is not None and self.manifest.outputs.probabilities else []
        return [PREDICTION, *(PROBABILITY_PREFIX + json_key(c) for c in classes or []), ERROR]

    @property
    def output_types(self) -> dict[str, str]:
        """The Arrow type of each output column (for a Parquet file whose first chunk is all empty)."""
        label = self.manifest.outputs.label
        classes = label.classes if label is not None else None
        first = classes[0] if classes else None
        kind = "bool" if isinstance(first, bool) else "int64" if isinstance(first, int) else "string"
        types = dict.fromkeys(self.output_columns, "float32")
        types[PREDICTION] = kind if label is not None else "float32"
        types[ERROR] = "string"
        return types

    def score(
        self,
        frame: pd.DataFrame,
        errors: Sequence[str | None] | None = None,
        *,
        from_text: bool = False,
        first_row: int = 0,
    ) -> pd.DataFrame:
        """The answers for every row of ``frame``, on ``frame``'s index. ``errors`` marks rows a reader
        could not parse (they are not scored); ``from_text``: string cells came from CSV text and may
        hold numbers and booleans. Raises ``InvalidInput`` when a feature column is missing, and
        ``InvalidRows`` for the first refused row under ``fail_fast`` (counted from ``first_row``, the
        frame's place in a table)."""
        import pandas as pd

        n = len(frame)
        problems: dict[int, str] = {i: e for i, e in enumerate(errors or ()) if e is not None}
        if problems and self.fail_fast:
            first = min(problems)
            where = first_row + first
            raise InvalidRows(f"row {where} cannot be read", [Problem(where, None, problems[first])])
        missing = [name for name in self.schema.names if name not in frame.columns]
        if missing:
            shown = ", ".join(missing[:5])
            raise InvalidInput(
                f"the table has no column for the feature(s) {shown}",
                [problem([name], "feature column missing", "missing") for name in missing[:20]],
            )
        rows = [i for i in range(n) if i not in problems] if problems else list(range(n))
        features = self._parsed(frame) if from_text else frame
        try:
            feed, rows = self._feed(features, rows, problems, from_text)
        except _RowRefused as e:
            where = first_row + e.row
            raise InvalidRows(
                f"row {where} does not match the model's schema",
                [Problem(where, feature, msg) for feature, msg in e.problems],
            ) from None
        out: dict[str, Any] = {}
        names = self.output_columns
        answer = self.answers.encode_batch(self.model.predict(feed)) if rows else {}
        out[PREDICTION] = _spread(answer.get("predictions"), rows, n)
        if len(names) > 2:
            probabilities = answer.get("probabilities")
            block = np.full((n, len(names) - 2), np.nan, dtype=np.float32)
            if rows and probabilities is not None:
                block[rows if len(rows) < n else slice(None)] = np.asarray(probabilities, dtype=np.float32)
            for j, name in enumerate(names[1:-1]):
                out[name] = block[:, j]
        error = np.full(n, None, dtype=object)
        for i, text in problems.items():
            error[i] = text
        out[ERROR] = error
        return pd.DataFrame(out, index=frame.index)

    # ------------------------------------------------------------------ internals

    def _feed(
        self, frame: pd.DataFrame, rows: list[int], problems: dict[int, str], from_text: bool
    ) -> tuple[Feed, list[int]]:
        """The feed of the scorable ``rows`` and those rows; the refused ones go to ``problems``."""
        if not rows:
            return Feed({}, 0), rows
        if len(rows) == len(frame):
            feed = self._flat(frame)
            if feed is not None:
                return feed, rows
        columns = {spec.name: _values(frame[spec.name], spec.dtype, from_text) for spec in self.schema.inputs}
        rounds = 0
        while rows:
            try:
                return self.schema.from_columns(_take(columns, rows)), rows
            except InvalidRows as e:
                refused = self._refused(e, rows)
                problems.update(refused)
                rows = [i for i in rows if i not in refused]
            rounds += 1
            if rounds >= _WHOLE_CHUNK_ROUNDS:
                break
        feeds: list[Feed] = []
        kept: list[int] = []
        for start in range(0, len(rows), _BLOCK_ROWS):
            block = rows[start : start + _BLOCK_ROWS]
            while block:
                try:
                    feeds.append(self.schema.from_columns(_take(columns, block)))
                    kept.extend(block)
                    break
                except InvalidRows as e:
                    refused = self._refused(e, block)
                    problems.update(refused)
                    block = [i for i in block if i not in refused]
        return (Feed.concat(feeds) if feeds else Feed({}, 0)), kept

    def _refused(self, error: InvalidRows, rows: list[int]) -> dict[int, str]:
        """The rows ``error``'s problems name → their problems, one line each. A problem with no row
        (the whole request, a whole column) is raised: no row could pass it."""
        found: dict[int, list[tuple[str | None, str]]] = {}
        for p in error.problems:
            if p.row is None:
                raise error
            found.setdefault(rows[p.row], []).append((p.feature, p.msg))
        if not found:
            raise error
        if self.fail_fast:
            first = min(found)
            raise _RowRefused(first, found[first])
        return {
            i: "; ".join(msg if feature is None else f"{feature}: {msg}" for feature, msg in texts)[
                :_MAX_ERROR_CHARS
            ]
            for i, texts in found.items()
        }

    def _parsed(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The feature columns of a text table with each numeric one parsed in one go (Arrow's cast)
        where every cell is a number or empty; a column with another text is left for ``_values`` to
        judge cell by cell."""
        import pandas as pd

        columns: dict[str, Any] = {}
        for spec in self.schema.inputs:
            column = frame[spec.name]
            if spec.dtype in _NUMERIC and column.dtype.kind not in "fiub":
                numbers = _numbers(column, spec.dtype)
                if numbers is not None:
                    column = pd.Series(numbers, index=frame.index)
            columns[spec.name] = column
        return pd.DataFrame(columns, index=frame.index)

    def _flat(self, frame: pd.DataFrame) -> Feed | None:
        """Every feature a float column without gaps: one float64 block through ``from_flat`` (the
        gateway's path for numeric rows), else None."""
        if self.schema.flat_width is None or any(s.dtype not in _FLOATS for s in self.schema.inputs):
            return None
        block = frame[list(self.schema.names)]
        if not all(dtype.kind in "fiu" for dtype in block.dtypes):
            return None
        numbers = block.to_numpy(dtype=np.float64)
        return self.schema.from_flat(numbers.ravel(), len(block))


class _RowRefused(Exception):
    """Under ``fail_fast``: the first refused row of a frame and its (feature, problem) pairs."""

    def __init__(self, row: int, problems: list[tuple[str | None, str]]) -> None:
        super().__init__(row)
        self.row = row
        self.problems = problems


def _spread(values: Any, rows: list[int], n: int) -> Any:
    """The answers of ``rows`` as a column of ``n`` rows, empty where a row was refused. Float32
    answers stay float32 (NaN where empty): their digits are the gateway's."""
    if values is None:
        return np.full(n, None, dtype=object)
    if len(rows) == n:
        return values
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        column = np.full(n, np.nan, dtype=values.dtype)
        column[rows] = values
        return column
    column = np.full(n, None, dtype=object)
    for i, value in zip(rows, values, strict=True):
        column[i] = value
    return column


def _take(columns: dict[str, list[Any]], rows: list[int]) -> dict[str, list[Any]]:
    if len(rows) == len(next(iter(columns.values()), [])):
        return columns
    return {name: [values[i] for i in rows] for name, values in columns.items()}


def _numbers(column: pd.Series[Any], dtype: str) -> npt.NDArray[Any] | None:
    """A text column as numbers (missing → NaN), or None when a cell is not a number. "nan" parses
    as NaN but is a text JSON could not send: None too."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        text = pa.array(column, type=pa.string(), from_pandas=True)
        for kind in (pa.int64(), pa.float64()) if dtype == "int64" else (pa.float64(),):
            try:
                numbers: npt.NDArray[Any] = pc.cast(text, kind).to_numpy(zero_copy_only=False)
                break
            except pa.ArrowInvalid:
                if kind == pa.float64():
                    return None
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if numbers.dtype.kind == "f" and (np.isnan(numbers) & column.notna().to_numpy()).any():
        return None
    return numbers


def _values(series: pd.Series[Any], dtype: str, from_text: bool) -> list[Any]:
    """A column as the JSON values a client would send for it (see the module docstring)."""
    import pandas as pd

    kind = series.dtype.kind
    if kind in "fiub":
        if kind == "f":
            return list(series.astype(object).where(series.notna(), None).tolist())
        return list(series.tolist())
    values: list[Any] = series.astype(object).where(series.notna(), None).tolist()
    texts = [i for i, v in enumerate(values) if isinstance(v, str)] if from_text else []
    if not texts:
        return values
    if dtype in ("float32", "float64", "int64"):
        parsed = pd.to_numeric(pd.Series([values[i] for i in texts], dtype=object), errors="coerce").tolist()
        for i, number in zip(texts, parsed, strict=True):
            text = values[i]
            if text == "":
                values[i] = None
            elif number == number:  # not NaN: the text was a number
                values[i] = number
    elif dtype == "bool":
        for i in texts:
            lowered = values[i].lower()
            if lowered in ("true", "false"):
                values[i] = lowered == "true"
            elif lowered == "":
                values[i] = None
    elif dtype == "string":
        for i in texts:
            if values[i] == "":
                values[i] = None
    return values


# ---------------------------------------------------------------------------------------------- files


@dataclass(frozen=True, slots=True)
class ScoreReport:
    """What ``predict_file`` did: rows read, rows scored, rows refused."""

    rows: int
    scored: int
    refused: int


def predict_file(
    scorer: Scorer,
    source: Path,
    target: Path,
    *,
    source_format: str | None = None,
    target_format: str | None = None,
    chunk_rows: int = 50_000,
    keep_inputs: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ScoreReport:
    """Score the table ``source`` into ``target`` chunk by chunk: the input columns (``keep_inputs``)
    then ``Scorer.output_columns``. ``progress(done, total)`` is called after each chunk (in rows
    for Parquet, bytes for CSV and JSON lines). ``target`` appears only when the whole table is written."""
    from bundlegate.tables import open_reader, open_writer, table_format

    fmt_in = table_format(source, source_format)
    fmt_out = table_format(target, target_format)
    reader = open_reader(source, fmt_in, chunk_rows=chunk_rows)
    rows = scored = 0
    outputs = scorer.output_columns
    with open_writer(target, fmt_out, scorer.output_types) as writer:
        for chunk in reader:
            frame = chunk.frame
            clash = [c for c in outputs if c in frame.columns] if keep_inputs else []
            if clash:
                raise TableError(f"the table already has a column named {clash[0]!r}; rename it first")
            result = scorer.score(frame, chunk.errors, from_text=fmt_in == "csv", first_row=rows)
            if keep_inputs:
                result = frame.join(result) if len(frame.columns) else result
            writer.write(result)
            rows += len(frame)
            scored += int(result[ERROR].isna().sum())
            if progress is not None:
                progress(chunk.done, reader.total)
    return ScoreReport(rows, scored, rows - scored)
