"""The payload log's lines, frames and writer process: lines are JSON whatever the values hold, a run
of requests writes what each would alone, a frame carries a run whole (or split, when large), and a
writer that cannot keep up (here a FIFO nobody reads yet, so opening it blocks the writer process)
costs dropped, counted requests at once, never a wait, and what was sent is written when it can."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bundlegate.feed import Prediction
from bundlegate.monitoring.payload_lines import PayloadEntry, join, lines_of, runs
from bundlegate.monitoring.payload_log import PayloadLog
from bundlegate.monitoring.payload_wire import frames, read_frame


def entry(i: int) -> PayloadEntry:
    columns = [np.array([float(i)]), None, np.array(['a "quoted" %s'], dtype=object)]
    return PayloadEntry(1.5, f"id-{i}%d", "m", 1, columns, Prediction(labels=np.array([i])))


def numeric(i: int, n: int) -> PayloadEntry:
    rows = np.arange(n * 2, dtype=np.float32).reshape(n, 2) + i
    p = Prediction(labels=np.array(["a", "b"] * n, dtype=object)[:n], probabilities=np.full((n, 2), 0.5))
    return PayloadEntry(2.25 + i, f"r{i}", "m", 3, rows, p)


def test_lines_are_json_whatever_the_values_hold() -> None:
    (line,) = lines_of(join([entry(3)])).splitlines()
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
    batch = [numeric(0, 1), numeric(1, 3), numeric(2, 1)]
    (run,) = runs(batch)
    together = lines_of(run)
    assert together == b"".join(lines_of(join([e])) for e in batch)
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


def test_a_frame_carries_a_run_and_a_large_one_goes_in_parts_that_keep_the_row_numbers() -> None:
    batch = [numeric(0, 1), numeric(1, 3), entry(7)]
    for run in runs(batch):  # two shapes: two runs
        ((only, _),), left_out = frames(run, 1 << 20)
        assert left_out == set()
        assert lines_of(read_frame(b"".join(bytes(b) for b in only))) == lines_of(run)
    big = join([numeric(5, 1000)])  # 1000 rows: 8 kB of inputs, 16 kB of probabilities, labels
    parts, left_out = frames(big, 6000)
    assert left_out == set()
    assert len(parts) > 4
    assert all(sum(len(bytes(b)) for b in frame) <= 6000 for frame, _ in parts)
    again = b"".join(lines_of(read_frame(b"".join(bytes(b) for b in frame))) for frame, _ in parts)
    assert again == lines_of(big)
    assert [json.loads(line)["row"] for line in again.splitlines()] == list(range(1000))
    with pytest.raises(ValueError):
        read_frame(b"".join(bytes(b) for b in parts[0][0])[:-1])


def test_a_row_larger_than_any_frame_is_left_out_and_counted() -> None:
    wide = PayloadEntry(1.0, "w", "m", 1, np.zeros((2, 5000), dtype=np.float64), Prediction(np.array([1, 2])))
    parts, left_out = frames(join([wide]), 1000)
    assert (parts, left_out) == ([], {"w"})  # one request, counted once


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_a_stuck_writer_drops_and_counts_instead_of_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "payload.fifo"
    os.mkfifo(fifo)
    drops: list[int] = []
    log = PayloadLog(str(fifo), max_bytes=1 << 20, max_queue=3, on_drop=drops.append)
    started = time.monotonic()
    for i in range(10):  # the writer is stuck until a reader opens the FIFO: put must not wait for it
        log.put(entry(i))
    assert time.monotonic() - started < 1.0
    # three wait (here: no event loop, so each is sent at once and waits in flight), seven are dropped
    assert log.dropped == 7
    assert sum(drops) == 7
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    log.close()
    reader.join(10)
    lines = [json.loads(line) for line in b"".join(received).splitlines()]
    assert [line["request_id"] for line in lines] == [f"id-{i}%d" for i in range(3)]


def test_the_writer_process_yields_the_cpu_ends_with_the_log_and_is_started_again_if_it_dies(
    tmp_path: Path,
) -> None:
    target = tmp_path / "payload.log"
    log = PayloadLog(str(target), max_bytes=1 << 20, max_queue=100)
    log.put(entry(0))
    assert log.flush()
    first = log._writer.process
    assert os.getpriority(os.PRIO_PROCESS, first.pid) == 19  # serving comes first
    first.send_signal(signal.SIGTERM)  # as a process group's stop signal would reach it
    first.send_signal(signal.SIGINT)  # or Ctrl-C in a terminal: it goes on until the log ends
    time.sleep(0.2)
    assert first.poll() is None
    first.kill()
    first.wait(5)
    log._writer.started -= 60  # as if it had run for a minute
    for i in range(1, 4):  # the first send after its death fails (dropped) and starts another
        log.put(entry(i))
        time.sleep(0.05)
    assert log._writer.process is not first
    log.close()
    assert log._writer.process.poll() is not None  # closing ended the writer
    ids = [json.loads(line)["request_id"] for line in target.read_text().splitlines()]
    assert ids[0] == "id-0%d"
    assert set(ids[1:]) <= {"id-1%d", "id-2%d", "id-3%d"}
    assert "id-3%d" in ids
    assert log.dropped == 4 - len(ids)


def test_a_request_the_log_cannot_carry_is_dropped_and_counted_not_raised(tmp_path: Path) -> None:
    log = PayloadLog(str(tmp_path / "payload.log"), max_bytes=1 << 20, max_queue=100)
    huge = np.array([2**70], dtype=object)  # no JSON integer holds it
    log.put(PayloadEntry(1.0, "big", "m", 1, np.zeros((1, 2)), Prediction(labels=huge)))
    log.put(entry(1))
    log.close()
    assert log.dropped == 1
    lines = (tmp_path / "payload.log").read_text().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == ["id-1%d"]


def test_a_writer_that_died_with_a_full_queue_is_started_again(tmp_path: Path) -> None:
    fifo = tmp_path / "payload.fifo"
    os.mkfifo(fifo)
    log = PayloadLog(str(fifo), max_bytes=1 << 20, max_queue=2)
    for i in range(3):  # stuck on the FIFO: two in flight, the third dropped
        log.put(entry(i))
    first = log._writer.process
    first.kill()
    first.wait(5)
    log._writer.started -= 60
    time.sleep(1.1)  # a full queue looks at the writer once a second
    log.put(entry(3))  # dropped (the queue is full), and the dead writer is seen and replaced
    assert log._writer.process is not first
    assert log.dropped == 1 + 1 + 2  # the third, this one, and the two in flight to the dead writer
    fifo.unlink()
    (tmp_path / "payload.fifo").touch()  # the new writer appends to a plain file
    log.put(entry(4))
    log.close()
    lines = (tmp_path / "payload.fifo").read_text().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == ["id-4%d"]


def test_the_writer_process_loads_only_what_it_uses() -> None:
    """The writer starts with every payload log: it must not pay for the web stack or the model
    runtime (the monitoring package's ``__init__`` imports nothing)."""
    heavy = ("pydantic", "prometheus_client", "starlette", "onnxruntime", "sklearn")
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, bundlegate.monitoring.payload_writer; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert loaded == ""
