"""The payload log's writer: entries wait in a bounded queue; when the writer cannot keep up (here a
FIFO nobody reads yet, so opening it blocks the writer thread) entries are dropped and counted at once,
and what was queued is written when the writer can go on."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from bundlegate.feed import Prediction
from bundlegate.monitoring.payload_lines import PayloadEntry, lines_of
from bundlegate.monitoring.payload_log import PayloadLog


def entry(i: int) -> PayloadEntry:
    columns = [np.array([float(i)]), None, np.array(['a "quoted" %s'], dtype=object)]
    return PayloadEntry(1.5, f"id-{i}%d", "m", 1, columns, Prediction(labels=np.array([i])))


def test_lines_are_json_whatever_the_values_hold() -> None:
    (line,) = lines_of([entry(3)]).splitlines()
    assert json.loads(line) == {
        "time": "1970-01-01T00:00:01.500Z",
        "request_id": "id-3%d",
        "model": "m",
        "version": 1,
        "row": 0,
        "inputs": [3.0, "***", 'a "quoted" %s'],
        "outputs": {"prediction": 3},
    }


def test_a_run_of_entries_writes_what_each_would_alone() -> None:
    def numeric(i: int, n: int) -> PayloadEntry:
        rows = np.arange(n * 2, dtype=np.float32).reshape(n, 2) + i
        p = Prediction(labels=np.array(["a", "b"] * n, dtype=object)[:n], probabilities=np.full((n, 2), 0.5))
        return PayloadEntry(2.25 + i, f"r{i}", "m", 3, rows, p)

    run = [numeric(0, 1), numeric(1, 3), numeric(2, 1)]
    together = lines_of(run)
    assert together == b"".join(lines_of([e]) for e in run)
    lines = [json.loads(line) for line in together.splitlines()]
    assert [(line["request_id"], line["row"]) for line in lines] == [
        ("r0", 0),
        ("r1", 0),
        ("r1", 1),
        ("r1", 2),
        ("r2", 0),
    ]
    assert lines[2]["inputs"] == [3.0, 4.0]
    assert lines[2]["outputs"] == {"prediction": "b", "probabilities": [0.5, 0.5]}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_a_stuck_writer_drops_and_counts_instead_of_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "payload.fifo"
    os.mkfifo(fifo)
    drops: list[int] = []
    log = PayloadLog(str(fifo), max_bytes=1 << 20, max_queue=3, on_drop=lambda: drops.append(1))
    for i in range(10):  # the writer is stuck until a reader opens the FIFO: put must not wait for it
        log.put(entry(i))
    # three wait at most; the writer took none or the first few before it blocked
    assert 1 <= log.dropped <= 7
    assert len(drops) == log.dropped
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    log.close()
    reader.join(10)
    lines = [json.loads(line) for line in b"".join(received).splitlines()]
    assert len(lines) == 10 - log.dropped
    assert [line["request_id"] for line in lines] == [f"id-{i}%d" for i in range(len(lines))]
