"""The sample given to ``bundle pack --sample``: rows like the training data, as a DataFrame.

Accepted: CSV (``.csv``, ``.txt``) with a header row, or without one when the first row is all
numbers; a NumPy array (``.npy``, 1-D or 2-D, no pickles); JSON (``.json``: a list of records
``[{"age": 41, ...}]``, a list of rows, or ``{"records": [...]}``).
Missing values are empty CSV cells, ``NA``/``NaN``/``null`` in CSV, NaN in arrays, ``null`` in JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bundlegate.errors import SampleMismatch, shorten

if TYPE_CHECKING:
    import pandas as pd

CSV_NA = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]


@dataclass(frozen=True)
class Sample:
    """Sample rows; ``named`` is false when the columns carry no names (a header-less array)."""

    frame: pd.DataFrame
    named: bool
    source: str  # file name, for messages


def read_sample(path: Path) -> Sample:
    """Read ``path`` by its suffix; ``SampleMismatch`` when it cannot be read or holds no rows."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise SampleMismatch(f"{path}: no such sample file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            sample = _from_array(path)
        elif suffix in (".json", ".jsonl"):
            sample = _from_json(path)
        else:
            frame = pd.read_csv(path, keep_default_na=False, na_values=CSV_NA)
            if _numeric_header(frame):  # no header row: the first row is data
                frame = pd.read_csv(path, header=None, keep_default_na=False, na_values=CSV_NA)
                sample = Sample(frame, named=False, source=path.name)
            else:
                sample = Sample(frame, named=True, source=path.name)
    except SampleMismatch:
        raise
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise SampleMismatch(f"{path.name}: cannot read the sample ({shorten(str(exc), 200)})") from None
    if len(sample.frame) == 0 or sample.frame.shape[1] == 0:
        raise SampleMismatch(f"{path.name}: the sample holds no rows")
    sample.frame.columns = [str(c) for c in sample.frame.columns]
    if len(set(sample.frame.columns)) != sample.frame.shape[1]:
        raise SampleMismatch(f"{path.name}: duplicate column names")
    return sample


def _numeric_header(frame: pd.DataFrame) -> bool:
    for c in frame.columns:
        try:
            float(str(c))
        except ValueError:
            return False
    return True


def _from_array(path: Path) -> Sample:
    import numpy as np
    import pandas as pd

    arr = np.load(path, allow_pickle=False)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise SampleMismatch(f"{path.name}: expected a 1-D or 2-D array, got {arr.ndim} dimensions")
    return Sample(pd.DataFrame(arr), named=False, source=path.name)


def _from_json(path: Path) -> Sample:
    import pandas as pd

    doc: Any = json.loads(path.read_text())
    if isinstance(doc, dict) and "records" in doc:
        doc = doc["records"]
    if not isinstance(doc, list) or not doc:
        raise SampleMismatch(f"{path.name}: expected a non-empty list of records")
    if all(isinstance(r, dict) for r in doc):
        keys = list(doc[0])
        for i, r in enumerate(doc):
            if list(r) != keys and set(r) != set(keys):
                raise SampleMismatch(f"{path.name}: record {i} has different keys than record 0")
        return Sample(pd.DataFrame.from_records(doc, columns=keys), named=True, source=path.name)
    if all(isinstance(r, list) for r in doc):
        widths = {len(r) for r in doc}
        if len(widths) != 1:
            raise SampleMismatch(f"{path.name}: rows have different lengths {sorted(widths)[:5]}")
        return Sample(pd.DataFrame(doc), named=False, source=path.name)
    raise SampleMismatch(f"{path.name}: expected a list of records (objects) or of rows (lists)")
