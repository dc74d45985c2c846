"""The engine's work files: data only (never pickle), written atomically, each with a digest to verify on resume.

Whoever can write an output folder must not be able to run code as the user who resumes a run there, so what
global steps observe and decide is stored as tagged JSON plus raw numpy buffers (`encode`/`decode`), read with
no code path that constructs arbitrary objects. Markers record each file's sha256 and resume re-computes a
shard whose file no longer matches. This module knows nothing of steps or stages.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from keel.core.errors import InputError

__all__ = ["decode", "encode", "file_digest", "read_verified", "write_bytes"]

_MAGIC = b"KEELWORK1\n"
_TAG = "__keel__"  # a JSON object {"__keel__": kind, "v": ...} stands for a non-JSON value
# numpy kinds a work file may hold: numbers and booleans. Object ("O") and void ("V") arrays are refused,
# since only they could carry anything but plain numbers.
_KINDS = frozenset("biuf")


def _tree(value: Any, arrays: list[np.ndarray[Any, Any]]) -> Any:
    """`value` as JSON-ready data, numpy arrays replaced by their index in `arrays`."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _KINDS:
            raise InputError(f"expected a numeric numpy array in a work file; got dtype {value.dtype}")
        arrays.append(np.ascontiguousarray(value))
        return {_TAG: "array", "v": len(arrays) - 1}
    if isinstance(value, np.generic):
        return _tree(value.item(), arrays)
    if isinstance(value, list):
        return [_tree(item, arrays) for item in value]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [_tree(item, arrays) for item in value]}
    if isinstance(value, set | frozenset):
        return {_TAG: "set", "v": [_tree(item, arrays) for item in sorted(value)]}
    if isinstance(value, bytes):
        return {_TAG: "bytes", "v": value.hex()}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and _TAG not in value:
            return {key: _tree(item, arrays) for key, item in value.items()}
        return {_TAG: "dict", "v": [[_tree(k, arrays), _tree(v, arrays)] for k, v in value.items()]}
    raise InputError(
        f"expected plain data (None, numbers, str, bytes, list, tuple, set, dict, numpy arrays) in a global "
        f"step's observation or decision; got {type(value).__name__}",
        hint="return plain data from observe/decide: work files are never pickled",
    )


def encode(value: Any) -> bytes:
    """`value` (plain data and numeric numpy arrays) as the bytes of a work file.

    Examples:
        >>> decode(encode({"ids": ("a", "b"), "drop": {3, 1}}))
        {'ids': ('a', 'b'), 'drop': {1, 3}}
    """
    arrays: list[np.ndarray[Any, Any]] = []
    tree = _tree(value, arrays)
    layout, offset = [], 0
    for array in arrays:
        layout.append({"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset})
        offset += array.nbytes
    header = json.dumps({"tree": tree, "arrays": layout}, separators=(",", ":")).encode()
    return b"".join([_MAGIC, struct.pack("<Q", len(header)), header, *(a.tobytes() for a in arrays)])


def decode(data: bytes) -> Any:
    """The value `encode` wrote; an `InputError` for anything else (nothing in the bytes is ever executed)."""
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 8:
        raise InputError("expected a Keel work file; got other bytes", hint="delete the output's .keel-work folder")
    start = len(_MAGIC) + 8
    (size,) = struct.unpack("<Q", data[len(_MAGIC) : start])
    try:
        header = json.loads(data[start : start + size])
        body = memoryview(data)[start + size :]
        arrays = []
        for spec in header["arrays"]:
            dtype = np.dtype(spec["dtype"])
            if dtype.kind not in _KINDS:
                raise ValueError(f"dtype {dtype} is not numeric")
            count = int(np.prod(spec["shape"], dtype=np.int64))
            flat = np.frombuffer(body, dtype=dtype, count=count, offset=int(spec["offset"]))
            arrays.append(flat.reshape(spec["shape"]))
        return _value(header["tree"], arrays)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputError(f"expected a valid Keel work file; got a damaged one ({exc})") from None


def _value(tree: Any, arrays: list[np.ndarray[Any, Any]]) -> Any:
    if isinstance(tree, list):
        return [_value(item, arrays) for item in tree]
    if not isinstance(tree, dict):
        return tree
    kind = tree.get(_TAG)
    if kind is None:
        return {key: _value(item, arrays) for key, item in tree.items()}
    items = tree["v"]
    if kind == "array":
        return arrays[items]
    if kind == "tuple":
        return tuple(_value(item, arrays) for item in items)
    if kind == "set":
        return {_value(item, arrays) for item in items}
    if kind == "bytes":
        return bytes.fromhex(items)
    if kind == "dict":
        return {_value(k, arrays): _value(v, arrays) for k, v in items}
    raise ValueError(f"unknown tag {kind!r}")


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes, hex."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_bytes(data: bytes, path: Path) -> str:
    """Write `data` atomically (a crash leaves no half file under the real name); return its sha256."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def read_verified(path: Path, digest: str) -> bytes:
    """The bytes of `path`, or an `InputError` when they do not hash to `digest` (changed since written)."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise InputError(
            f"expected work file {path} to have sha256 {digest[:12]}…; it changed since it was written",
            hint="delete the output's .keel-work folder and run again",
        )
    return data
