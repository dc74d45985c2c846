"""Model file scanning: pickles that import or call, executable content, malformed safetensors headers.

Pickled weights (`.bin`, `.pt`, `.pkl`, PyTorch zip checkpoints) are read by picklescan, which walks
the opcodes without unpickling and reports every global a pickle would import, rated dangerous
(`os.system`, `builtins.eval`, ...), suspicious or innocuous. Native executables (ELF, PE, Mach-O) and
scripts with a shebang are findings whatever their name. A safetensors file's header is checked
against its size: its length, JSON, dtypes, shapes and data offsets (a malformed one is suspicious:
reported, not refused). Nothing here loads a model.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any, Literal

__all__ = ["Finding", "ScanReport", "scan_files"]

Severity = Literal["dangerous", "suspicious"]

_PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dat", ".data", ".npy", ".zip"}
_EXECUTABLE_MAGIC = {
    b"\x7fELF": "an ELF executable",
    b"MZ": "a Windows (PE) executable",
    b"\xcf\xfa\xed\xfe": "a Mach-O executable",
    b"\xfe\xed\xfa\xcf": "a Mach-O executable",
    b"\xca\xfe\xba\xbe": "a Mach-O universal binary",
    b"#!": "a script with a shebang",
}
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own bound


@dataclass(frozen=True)
class Finding:
    """One problem in one file."""

    path: str
    severity: Severity
    kind: str  # pickle_global, executable, safetensors_header, scan_error
    detail: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"path": self.path, "severity": self.severity, "kind": self.kind, "detail": self.detail}


@dataclass
class ScanReport:
    """What a scan found in a model's files; `safe` when nothing dangerous was found."""

    files: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        """No dangerous finding."""
        return not any(f.severity == "dangerous" for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"safe": self.safe, "files": self.files, "findings": [f.to_json() for f in self.findings]}

    def summary(self) -> str:
        """One line naming the first dangerous findings."""
        bad = [f for f in self.findings if f.severity == "dangerous"]
        shown = "; ".join(f"{f.path}: {f.detail}" for f in bad[:3])
        return f"{len(bad)} dangerous finding(s) in {self.files} file(s): {shown}" + ("; …" if len(bad) > 3 else "")


def _scan_pickle(name: str, path: Path) -> list[Finding]:
    from picklescan.scanner import SafetyLevel, scan_file_path

    result = scan_file_path(str(path))
    findings = []
    for item in result.globals:
        if item.safety == SafetyLevel.Innocuous:
            continue
        severity: Severity = "dangerous" if item.safety == SafetyLevel.Dangerous else "suspicious"
        findings.append(Finding(name, severity, "pickle_global", f"imports {item.module}.{item.name}"))
    if result.scan_err:
        findings.append(Finding(name, "suspicious", "scan_error", "picklescan could not parse the whole file"))
    return findings


def _scan_safetensors(name: str, path: Path) -> list[Finding]:  # noqa: C901 - one check per header rule
    size = path.stat().st_size

    def bad(detail: str) -> list[Finding]:
        # Suspicious, not dangerous: the safetensors parser refuses such a file rather than run anything,
        # and placeholder weights (tests, stubs) are malformed in the same way.
        return [Finding(name, "suspicious", "safetensors_header", detail)]

    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return bad(f"the file holds {size} bytes; a safetensors file starts with an 8-byte header length")
        (length,) = struct.unpack("<Q", head)
        if length > _MAX_HEADER or 8 + length > size:
            return bad(f"the header claims {length} bytes; the file holds {size}")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, ValueError):
            return bad("the header is not JSON")
    if not isinstance(header, dict):
        return bad("the header is not a JSON object")
    data_size = size - 8 - length
    spans = []
    for tensor, info in header.items():
        if tensor == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            return bad(f"tensor {tensor!r} lacks dtype, shape or data_offsets")
        if dtype not in _DTYPE_BYTES or not all(isinstance(d, int) and d >= 0 for d in shape):
            return bad(f"tensor {tensor!r} has dtype {dtype!r} and shape {shape!r}")
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= data_size):
            return bad(f"tensor {tensor!r} spans bytes {begin}..{end} of a {data_size}-byte data section")
        if end - begin != _DTYPE_BYTES[dtype] * prod(shape):
            return bad(f"tensor {tensor!r} of {dtype}{shape} needs {_DTYPE_BYTES[dtype] * prod(shape)} bytes")
        spans.append((begin, end))
    spans.sort()
    for (_, end), (begin, _) in zip(spans, spans[1:], strict=False):
        if begin < end:
            return bad("two tensors overlap in the data section")
    return []


def _scan_one(name: str, path: Path) -> list[Finding]:
    with path.open("rb") as handle:
        magic = handle.read(4)
    for prefix, what in _EXECUTABLE_MAGIC.items():
        if magic.startswith(prefix):
            return [Finding(name, "dangerous", "executable", f"the file is {what}")]
    suffix = Path(name).suffix.lower()
    if suffix == ".safetensors":
        return _scan_safetensors(name, path)
    if suffix in _PICKLE_SUFFIXES or magic[:1] == b"\x80" or magic.startswith(b"PK"):
        return _scan_pickle(name, path)
    if suffix in (".py", ".so", ".dll", ".dylib", ".exe", ".sh"):
        return [Finding(name, "suspicious", "executable", f"{suffix} files can run code when the model is loaded")]
    return []


def scan_files(files: Iterable[tuple[str, Path]]) -> ScanReport:
    """Scan model files given as (name inside the model, local path).

    Examples:
        >>> scan_files([("model.safetensors", Path("model.safetensors"))]).safe  # doctest: +SKIP
        True
    """
    report = ScanReport()
    for name, path in files:
        report.files += 1
        report.findings += _scan_one(name, path)
    return report
