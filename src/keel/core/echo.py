r"""Echo user input in messages safely: short, without control characters, unicode kept.

An error, log line, HTTP body or quarantine reason that repeats what a user sent must not repeat a
megabyte of it, nor carry a terminal escape sequence (`\x1b[2J`), a bidi override that reorders what is
shown, or a lone surrogate that cannot be encoded. `shown` renders one value for a message; `safe_message`
cleans a whole message at an output boundary (CLI, HTTP, logs), for text that embedded values unshortened.
Imports nothing else of Keel.
"""

from __future__ import annotations

import re

__all__ = ["ECHO_CHARS", "safe_message", "shown", "without_credentials"]

ECHO_CHARS = 80
"""How many characters of a value a message repeats."""

# C0 controls but tab and newline, DEL and the C1 controls (\x9b is a one-byte CSI: an escape sequence on
# its own), the bidi embeddings, overrides and isolates, and unpaired surrogates.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(value: object, limit: int = ECHO_CHARS) -> str:
    r"""`value` as a message shows it: quoted like `repr`, cut to `limit` characters, every control escaped.

    Strings keep their unicode letters (`repr` escapes only what does not print); a longer value is cut and
    says how long it was. Anything else is shown by its `repr`, cut the same way.

    Examples:
        >>> shown("caf\u00e9\x1b[2J")
        "'café\\x1b[2J'"
        >>> shown("x" * 1_000_000, limit=4)
        "'xxxx'… (1,000,000 characters)"
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return _UNSAFE_IN_LINE.sub(_escape, repr(value))
        return f"{_UNSAFE_IN_LINE.sub(_escape, repr(value[:limit]))}… ({len(value):,} characters)"
    if isinstance(value, bytes | bytearray):
        if len(value) <= limit:
            return repr(bytes(value))
        return f"{bytes(value[:limit])!r}… ({len(value):,} bytes)"
    try:
        text = repr(value)
    except Exception:  # a user object whose __repr__ fails must not turn an error message into a crash
        text = f"<{type(value).__name__}>"
    text = _UNSAFE_IN_LINE.sub(_escape, text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


# `scheme://user:password@`: the password runs to the last `@` (an unencoded `@` in a password is common in
# URLs that fail to parse, and masking too much is safer than showing part of a secret).
_CREDENTIALS = re.compile(r"(://[^/:@\s]*):\S*@")


def without_credentials(text: str) -> str:
    """`text` with the password of any `scheme://user:password@host` in it replaced by `***`.

    For URLs a parser refused (so cannot render without their password): a settings error must not print a
    database password.

    Examples:
        >>> without_credentials("postgres ql://keel:s3cr@t@db/keel")
        'postgres ql://keel:***@db/keel'
    """
    return _CREDENTIALS.sub(r"\1:***@", text)


def safe_message(text: str, *, line_chars: int = 500, max_lines: int = 50) -> str:
    r"""A whole message made safe to print, log or send: controls escaped (not newline or tab), lines cut.

    For an output boundary (the CLI's error line, an HTTP error body, a log record) where the message may
    embed a value nobody shortened, e.g. a library's exception text. Each line keeps `line_chars` characters
    and says how long it was; past `max_lines`, the rest are counted instead of shown.

    Examples:
        >>> safe_message("bad value \x1b[31mred")
        'bad value \\x1b[31mred'
    """
    if len(text) <= line_chars and not _UNSAFE.search(text):
        return text  # the common case: one short, clean line
    lines = text.split("\n")
    kept = [_cut(_UNSAFE.sub(_escape, line), line_chars) for line in lines[:max_lines]]
    if len(lines) > max_lines:
        kept.append(f"… ({len(lines) - max_lines:,} more lines)")
    return "\n".join(kept)


def _cut(line: str, limit: int) -> str:
    return line if len(line) <= limit else f"{line[:limit]}… ({len(line):,} characters)"
