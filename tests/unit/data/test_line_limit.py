"""The longest line `keel data commit` reads (`MAX_LINE_BYTES`, `KEEL_MAX_LINE_BYTES`): a longer one is refused
as soon as it is read, naming the file, the line and the limit, so a file without newlines fails fast.

Real files throughout; the limit is lowered per test (argument or environment) so no file is large, except
one sparse file (no disk blocks) read against the default limit.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard
from typer.testing import CliRunner

from keel.cli import app
from keel.core.errors import InputError
from keel.data._inputs import MAX_LINE_BYTES, max_line_bytes, read_jsonl_table, values_match

runner = CliRunner()


def _lines(lengths: list[int]) -> list[bytes]:
    """JSON lines of exactly these byte lengths (without the newline), with non-ASCII text."""
    out = []
    for n in lengths:
        stub = b'{"t": ""}'
        text = ("é" * ((n - len(stub)) // 2) + "a" * ((n - len(stub)) % 2)).encode()
        line = b'{"t": "' + text + b'"}'
        assert len(line) == n
        out.append(line)
    return out


def _write(path: Path, lines: list[bytes], *, trailing_newline: bool = True) -> Path:
    data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    elif path.name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_the_longest_line_sets_the_boundary_exactly(tmp_path: Path, suffix: str, trailing_newline: bool) -> None:
    lengths = [40, 1000, 97, 4099, 12, 2048, 4099, 30]  # lines longer and shorter than a read chunk
    for longest_at in (3, 7):  # the longest line in the middle, then last
        lines = _lines([n if i != longest_at else 5000 for i, n in enumerate(lengths)])
        path = _write(tmp_path / f"f{longest_at}{suffix}", lines, trailing_newline=trailing_newline)
        table = read_jsonl_table(path, max_line=5000)  # exactly as long as the limit: read
        assert all(values_match(json.loads(line), row) for line, row in zip(lines, table.to_pylist(), strict=True))
        with pytest.raises(InputError) as refused:
            read_jsonl_table(path, max_line=4999)
        assert f"{path}:{longest_at + 1}: expected lines of at most 4,999 bytes" in str(refused.value)
        assert "KEEL_MAX_LINE_BYTES" in (refused.value.hint or "")


@pytest.mark.parametrize("chunk_ends_at_cr", [False, True])
def test_crlf_newlines_and_a_utf8_bom_are_not_counted_in_a_line(tmp_path: Path, chunk_ends_at_cr: bool) -> None:
    # A line's length is without its newline (CRLF's CR is part of it) and without the byte-order mark `_as_utf8`
    # drops: a CRLF or BOM file whose longest line is exactly the limit is read, as the same lines with LF are.
    # Read in chunks of 5,000 bytes: with a first line of 4,994, the long line's CR ends the second chunk.
    longest, lines = 5000, _lines([4994, 5000, 30] if chunk_ends_at_cr else [5000, 40, 30])
    data = b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n"
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(data)
    table = read_jsonl_table(path, max_line=longest)
    assert all(values_match(json.loads(line), row) for line, row in zip(lines, table.to_pylist(), strict=True))
    with pytest.raises(InputError, match=r"crlf\.jsonl:\d: expected lines of at most 4,999 bytes"):
        read_jsonl_table(path, max_line=longest - 1)


def test_utf16_lines_are_measured_in_utf8_and_named_by_line(tmp_path: Path) -> None:
    lines = [json.dumps({"t": text}, ensure_ascii=False) for text in ("short", "ü" * 3000, "end")]
    path = tmp_path / "wide.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-16"))
    assert read_jsonl_table(path, encoding="utf-16", max_line=len(lines[1].encode())).num_rows == 3
    with pytest.raises(InputError, match=r"wide\.jsonl:2: expected lines of at most 6,000 bytes"):
        read_jsonl_table(path, encoding="utf-16", max_line=6000)


def test_a_sparse_file_without_newlines_is_refused_at_the_default_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"text": "')
        f.truncate(3 << 30)  # 3 GiB of zero bytes, no disk blocks
    assert max_line_bytes() == MAX_LINE_BYTES == 64 << 20
    with pytest.raises(InputError, match=r"huge\.jsonl:1: expected lines of at most 67,108,864 bytes"):
        read_jsonl_table(path)


def test_the_cli_refuses_a_long_line_with_exit_2_and_stores_nothing(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "long.jsonl", _lines([50, 60, 70, 9000, 80]))
    monkeypatch.setenv("KEEL_MAX_LINE_BYTES", "8192")
    result = runner.invoke(app, ["-w", str(workspace), "data", "commit", "kb", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{path}:4: expected lines of at most 8,192 bytes" in result.output
    assert runner.invoke(app, ["-w", str(workspace), "data", "show", "kb"]).exit_code == 2  # no dataset
    monkeypatch.setenv("KEEL_MAX_LINE_BYTES", "9000")
    assert runner.invoke(app, ["-w", str(workspace), "data", "commit", "kb", str(path)]).exit_code == 0
    monkeypatch.setenv("KEEL_MAX_LINE_BYTES", "64MB")
    bad = runner.invoke(app, ["-w", str(workspace), "data", "commit", "kb", str(path)])
    assert bad.exit_code == 2 and "expected KEEL_MAX_LINE_BYTES to be a positive number of bytes" in bad.output
