"""References to versioned objects: `NAME`, `NAME@vN`, `NAME@latest` and `NAME@<alias>`.

Parsing only; resolving a reference against the database is `_aliases.resolve_version`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from keel.core.echo import shown
from keel.core.errors import InputError

__all__ = ["NAME_PATTERN", "Ref", "Subject", "check_alias", "check_name", "parse_ref", "parse_version"]

Subject = Literal["model", "prompt", "dataset"]

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME = re.compile(NAME_PATTERN)
_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_VERSION = re.compile(r"v([1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed reference: a name and either a version number, an alias, or neither (latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@v{self.version}"
        return f"{self.name}@{self.alias or 'latest'}"


def check_name(name: str, subject: str = "model") -> str:
    """Return `name` if it can name a model or prompt, else raise `InputError` saying what can.

    Examples:
        >>> check_name("support-bot")
        'support-bot'
    """
    if not _NAME.fullmatch(name):
        raise InputError(
            f"expected a {subject} name of letters, digits, '.', '_' or '-' (at most 128, starting "
            f"with a letter or digit); got {name!r}"
        )
    return name


def check_alias(alias: str) -> str:
    """Return `alias` if it is a valid alias name (lowercase, not `latest` nor `vN`).

    Examples:
        >>> check_alias("production")
        'production'
    """
    if not _ALIAS.fullmatch(alias) or alias == "latest" or _VERSION.fullmatch(alias):
        raise InputError(
            f"expected an alias such as 'production' or 'staging' (lowercase letters, digits, '-', '_'; "
            f"not 'latest' or a version like 'v3'); got {alias!r}"
        )
    return alias


def parse_ref(text: str, subject: str = "model") -> Ref:
    """Parse `NAME`, `NAME@vN`, `NAME@latest` or `NAME@alias`.

    Examples:
        >>> parse_ref("chat@v3")
        Ref(name='chat', version=3, alias=None)
        >>> parse_ref("chat@production").alias, parse_ref("chat").version
        ('production', None)
    """
    name, sep, tail = text.partition("@")
    check_name(name, subject)
    if not sep or tail == "latest":
        return Ref(name)
    if match := _VERSION.fullmatch(tail):
        return Ref(name, version=int(match.group(1)))
    if re.fullmatch(r"v[0-9]+", tail):
        raise InputError(f"versions count from v1; got {shown(text)}")
    if _ALIAS.fullmatch(tail):
        return Ref(name, alias=tail)
    raise InputError(f"expected a {subject} reference NAME, NAME@vN, NAME@latest or NAME@<alias>; got {shown(text)}")


def parse_version(text: str) -> int:
    """A version number from `vN` or `N`.

    Examples:
        >>> parse_version("v3"), parse_version("3")
        (3, 3)
    """
    match = _VERSION.fullmatch(text) or _VERSION.fullmatch(f"v{text}")
    if match is None:
        raise InputError(f"expected a version such as v3 or 3; got {shown(text)}")
    return int(match.group(1))
