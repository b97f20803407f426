"""One turn of raw onnxruntime on a 1000-row batch, for the gateway-vs-bounds turns of ``bench/run.py``.

Run pinned, with the peer harness's tools venv (its onnxruntime is the bound's):

    taskset -c 1 $PEERS_ROOT/venv-tools/bin/python bench/ort_turn.py HARNESS MODELS MODEL SECONDS

Times exactly what the harness's ``ort_raw.py`` times for its batch figure (its ``timed`` on its
session: one intra-op thread, sequential, the ``label`` output of the same ONNX file and rows), without
its single-row and sklearn timings, so a turn lasts about SECONDS. Prints one JSON object.
"""

import json
import sys

import numpy as np
import onnxruntime as ort


def main(harness: str, models: str, model: str, seconds: float) -> None:
    sys.path.insert(0, harness)
    from ort_raw import timed  # the harness's timing loop, unchanged

    with open(f"{models}/samples.json") as f:
        rows = np.array(json.load(f)[model]["batch"], dtype=np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(f"{models}/{model}.onnx", opts, providers=["CPUExecutionProvider"])
    result = timed(lambda x: sess.run(["label"], {"input": x}), rows, seconds)
    print(json.dumps({"onnxruntime": ort.__version__, **result}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
