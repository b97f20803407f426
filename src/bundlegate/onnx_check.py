"""ONNX admission: what a model file may hold before onnxruntime sees it.

``problems(model_bytes)`` walks the protobuf wire format (no ``onnx`` package: the gateway does not
install it) and names what a bundle may not hold:

- a node of an operator domain other than the standard ones (``""``/``ai.onnx``, ``ai.onnx.ml``):
  custom and contributed operators are code the bundle format does not vouch for;
- a tensor whose data lives outside the file (``external_data``, ``data_location = EXTERNAL``): a
  model loaded from memory would resolve those paths against the gateway's working directory.

The walk visits the messages that hold nodes or tensors (graphs, nodes, attributes, functions,
sparse tensors, training info) and steps over everything else by its wire type; a run of the same
repeated scalar (the millions of unpacked integers of a tree ensemble) is stepped over by one
regular-expression match instead of one varint at a time.

Run as a script (``python -I -S onnx_check.py LIMIT_BYTES [DOMAIN...]``, the model on standard input) it
checks the model in a process of its own with its address space capped, so a file made to exhaust
the parser takes down that process only: exit 0 admitted, 2 refused (the reasons on standard output,
one a line). This module imports only the standard library, so ``-S`` (no site-packages) runs it.
"""

from __future__ import annotations

import re
import sys

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
REFUSED = 2

# message kind -> {field number in onnx.proto: kind of the sub-message}
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 8: "opset", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node", 9: "opset"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
    "opset": {},
}
_DOMAIN_FIELD = {"node": 7, "opset": 1}
_TENSOR_EXTERNAL_DATA = 13
_TENSOR_DATA_LOCATION = 14
_MAX_DEPTH = 64
_EXTERNAL = "a tensor refers to external data, which bundles may not use"
_VARINT = rb"[\x80-\xff]{0,9}[\x00-\x7f]"
_runs: dict[tuple[int, int], re.Pattern[bytes]] = {}


class WireError(Exception):
    """The bytes are not a protobuf message of the expected shape."""


def problems(model_bytes: bytes, extra_domains: tuple[str, ...] = ()) -> list[str]:
    """What ``model_bytes`` holds that a bundle may not (empty: admitted), operators of
    ``extra_domains`` admitted too; ``WireError`` for bytes that are not an ONNX protobuf."""
    found: dict[str, str | None] = {}  # problem -> its domain (None: not a domain problem)
    _walk(memoryview(model_bytes), "model", 0, found)
    admitted = STANDARD_DOMAINS | set(extra_domains)
    return [p for p, domain in found.items() if domain is None or domain not in admitted]


def refers_to_external_data(model_bytes: bytes) -> bool:
    """Whether a tensor of ``model_bytes`` keeps its data outside the file; ``WireError`` for bytes
    that are not an ONNX protobuf."""
    found: dict[str, str | None] = {}
    _walk(memoryview(model_bytes), "model", 0, found)
    return _EXTERNAL in found


def operator_domains(model_bytes: bytes) -> set[str]:
    """The non-standard operator domains ``model_bytes`` uses (empty for a standard model)."""
    found: dict[str, str | None] = {}
    _walk(memoryview(model_bytes), "model", 0, found)
    return {d for d in found.values() if d is not None}


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise WireError
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _skip_run(buf: memoryview, pos: int, key: int, wire: int) -> int:
    """Where a run of fields with one-byte ``key`` (varints or fixed32/64) that starts at ``pos`` ends."""
    pattern = _runs.get((key, wire))
    if pattern is None:
        value = _VARINT if wire == 0 else rb"[\x00-\xff]{%d}" % (8 if wire == 1 else 4)
        pattern = _runs[(key, wire)] = re.compile(rb"(?:%s%s)*" % (re.escape(bytes([key])), value))
    match = pattern.match(buf, pos)
    return int(match.end()) if match else pos


def _walk(buf: memoryview, kind: str, depth: int, found: dict[str, str | None]) -> None:
    if depth > _MAX_DEPTH:
        raise WireError
    children = _CHILDREN[kind]
    domain_field = _DOMAIN_FIELD.get(kind)
    pos = 0
    end_of_buf = len(buf)
    while pos < end_of_buf:
        start = pos
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            if kind == "tensor" and field == _TENSOR_DATA_LOCATION and value == 1:
                found[_EXTERNAL] = None
            elif key < 0x80:
                pos = _skip_run(buf, pos, key, 0)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if key < 0x80:
                pos = _skip_run(buf, pos, key, wire)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            end = pos + length
            if end > end_of_buf:
                raise WireError
            if kind == "tensor" and field == _TENSOR_EXTERNAL_DATA:
                found[_EXTERNAL] = None
            elif field == domain_field:
                _check_domain(bytes(buf[pos:end]), kind, found)
            else:
                child = children.get(field)
                if child is not None:
                    _walk(buf[pos:end], child, depth + 1, found)
            pos = end
        else:
            raise WireError
        if pos <= start:
            raise WireError
    if pos != end_of_buf:
        raise WireError


def _check_domain(raw: bytes, kind: str, found: dict[str, str | None]) -> None:
    """Note a non-standard ``domain`` (``problems`` keeps those not admitted)."""
    try:
        domain = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError from None
    if domain not in STANDARD_DOMAINS:
        what = "an operator" if kind == "node" else "an opset import"
        found[f"{what} of domain {domain[:60]!r}: not a standard ONNX domain (--onnx-domains)"] = domain


def main(argv: list[str]) -> int:
    """The script: the model on standard input; the address-space limit in bytes, then the admitted
    extra domains, as arguments."""
    import resource

    limit = int(argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    data = sys.stdin.buffer.read()
    try:
        found = problems(data, tuple(argv[2:]))
    except WireError:
        found = ["not a valid ONNX protobuf"]
    except RecursionError:
        found = ["nested too deeply"]
    for line in found:
        print(line)
    return REFUSED if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
