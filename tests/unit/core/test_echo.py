"""`shown` and `safe_message`: what messages repeat of user input is short, printable and still readable."""

from __future__ import annotations

from typing import Any

import pytest

from keel.core.echo import safe_message, shown

HOSTILE = [
    "\x1b[2J\x1b]0;pwned\x07",  # clear the screen, set the terminal title
    "\x9b31m",  # a one-byte CSI
    "\u202egnp.exe",  # a right-to-left override
    "\ud800",  # a lone surrogate: cannot be encoded to print
    "\x00\x08\x7f",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_shown_escapes_every_control_and_can_be_encoded(value: str) -> None:
    text = shown(value)
    assert all(c.isprintable() for c in text), text
    text.encode("utf-8")  # no lone surrogate left


def test_shown_cuts_a_megabyte_and_says_how_long_it_was() -> None:
    text = shown("x" * 1_000_000)
    assert text == f"'{'x' * 80}'… (1,000,000 characters)"
    assert shown("é" * 100, limit=3) == "'ééé'… (100 characters)"


def test_shown_keeps_short_values_exactly_as_repr_and_unicode_readable() -> None:
    for value in ("plain", "café ☕ 日本語", "it's", 'say "hi"', 42, None, ["a", 1]):
        assert shown(value) == repr(value)


def test_shown_of_other_types_cuts_their_repr() -> None:
    assert shown(b"\x00" * 1000, limit=2) == "b'\\x00\\x00'… (1,000 bytes)"
    assert shown(list(range(100_000))).endswith(" characters)") and len(shown(list(range(100_000)))) < 120

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert shown(Broken()) == "<Broken>"

    class Sneaky:
        def __repr__(self) -> str:
            return "\x1b[31mred"

    assert shown(Sneaky()) == "\\x1b[31mred"


@pytest.mark.parametrize("value", HOSTILE)
def test_safe_message_escapes_controls_but_keeps_lines_and_tabs(value: str) -> None:
    text = safe_message(f"bad value {value}\n\tsecond line")
    assert text.split("\n")[1] == "\tsecond line"
    assert all(c.isprintable() or c in "\n\t" for c in text), text
    text.encode("utf-8")


def test_safe_message_cuts_long_lines_and_many_lines() -> None:
    assert safe_message("y" * 1_000_000) == "y" * 500 + "… (1,000,000 characters)"
    many = safe_message("\n".join(f"line {i}" for i in range(1000)))
    assert many.splitlines()[-1] == "… (950 more lines)" and len(many.splitlines()) == 51


def test_safe_message_returns_a_clean_short_message_itself() -> None:
    message: Any = "expected a dataset reference NAME@vN; got 'x'"
    assert safe_message(message) is message
