"""What a reader yields instead of a record: a `Problem` (file, line, reason), quarantined by the engine.

Shared by the plain-file readers (`_readers`) and the web readers (`_web_readers`), which import it from
here rather than from each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from keel.core.errors import InputError

__all__ = ["Problem", "ProblemReason", "file_mtime"]


class ProblemReason(StrEnum):
    """Why an input item was quarantined."""

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TEXT = "missing_text"
    TEXT_NOT_A_STRING = "text_not_a_string"
    EMPTY_DOCUMENT = "empty_document"
    UNDECODABLE = "undecodable"
    UNREADABLE_FILE = "unreadable_file"
    TOO_MANY_FIELDS = "too_many_fields"  # a CSV row with more fields than its header
    # What `keel.data`'s JSON line checks refuse (JsonLineReason): values that could not be kept exactly.
    TOO_DEEP = "too_deep"
    NON_FINITE_NUMBER = "non_finite_number"
    INTEGER_OUT_OF_RANGE = "integer_out_of_range"
    INVALID_UNICODE = "invalid_unicode"
    # An id an earlier input record already had (`keel.curate._duplicate_ids`): only the first is kept.
    DUPLICATE_ID = "duplicate_id"


@dataclass(frozen=True, slots=True)
class Problem:
    """One input item that did not become a record."""

    file: str
    line: int | None
    reason: str  # a ProblemReason, or a reader's own StrEnum (e.g. the web readers' WebProblemReason)
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for the quarantine file."""
        return {"file": self.file, "line": self.line, "reason": str(self.reason), "detail": self.detail}

    def strict_error(self) -> InputError:
        """The error `--strict` stops with instead of quarantining this item."""
        detail = f" ({self.detail})" if self.detail else ""
        return InputError(f"bad input (--strict): {self.file} line {self.line}: {self.reason}{detail}")


def file_mtime(path: Path) -> datetime:
    """A file's modification time in UTC: the `fetched_at` of records read from it."""
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
