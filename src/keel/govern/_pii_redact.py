"""Rewrite text from detected PII spans: placeholders, masks or salted pseudonyms.

Knows nothing of how spans were found (`_pii_detect`) nor of records: curation's PII step and the
gateway's guardrails call it on plain strings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

from keel.core.echo import shown
from keel.core.errors import InputError
from keel.govern._pii_detect import PiiSpan, PiiType

__all__ = ["RedactMode", "redact"]

RedactMode = Literal["mask", "hash", "placeholder"]


def redact(text: str, spans: Sequence[PiiSpan], mode: RedactMode = "placeholder", *, salt: str = "") -> str:
    """Replace each span of `text` by a placeholder, a mask or a salted pseudonym.

    Args:
        text: The text the spans were found in.
        spans: Non-overlapping spans, in any order (what `PiiDetector.detect` returns).
        mode: "placeholder" writes `<EMAIL>`; "mask" writes as many `*` as the value had characters;
            "hash" writes `<EMAIL:` + the first 12 hex digits of sha256(salt + value) + `>`, the same for
            the same value and salt, so redacted records can still be joined on it.
        salt: Mixed into "hash" so pseudonyms cannot be reversed by hashing guesses; keep it secret.

    Returns:
        The redacted text.

    Raises:
        InputError: An unknown mode, or spans that overlap or fall outside the text.

    Examples:
        >>> span = PiiSpan(PiiType.EMAIL, 5, 20)
        >>> redact("mail ada@example.org now", [span]), redact("mail ada@example.org now", [span], "mask")
        ('mail <EMAIL> now', 'mail *************** now')
    """
    if mode not in ("mask", "hash", "placeholder"):
        raise InputError(f"expected redaction mode 'placeholder', 'mask' or 'hash', got {shown(mode)}")
    pieces: list[str] = []
    pos = 0
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if span.start < pos or span.end > len(text) or span.start >= span.end:
            raise InputError(
                f"expected non-overlapping spans inside the text's {len(text)} characters, got {span}",
                hint="pass the spans PiiDetector.detect returned for this very text",
            )
        pieces.append(text[pos : span.start])
        value = text[span.start : span.end]
        name = PiiType(span.type).name
        if mode == "placeholder":
            pieces.append(f"<{name}>")
        elif mode == "mask":
            pieces.append("*" * len(value))
        else:
            pieces.append(f"<{name}:{hashlib.sha256((salt + value).encode()).hexdigest()[:12]}>")
        pos = span.end
    pieces.append(text[pos:])
    return "".join(pieces)
