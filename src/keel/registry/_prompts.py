"""The prompt registry: Jinja2 templates with declared variables and few-shot examples, as `NAME@vN`.

A version is immutable and identified by the digest of its template, variables and examples, so
creating the latest content again is a no-op. Templates are checked when created (syntax, every
variable declared) and render in Jinja2's sandbox only after every variable problem is reported.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Annotated, Any

import jinja2
from jinja2 import meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, ValidationError
from sqlalchemy import Connection, and_, func, select

from keel.core.clock import format_time
from keel.core.errors import InputError
from keel.core.ids import canonical_json, sha256_hex
from keel.core.settings import read_config_file
from keel.govern._access import require
from keel.registry._aliases import (
    AliasEvent,
    alias_history,
    aliases_of,
    latest_version,
    lock_name,
    resolve_version,
    roll_back_alias,
    set_alias,
)
from keel.registry._refs import Ref, check_name, parse_ref
from keel.store import Store, add_edge, add_node, node_id
from keel.store.schema import aliases, prompt_versions, prompts

__all__ = [
    "PromptSummary",
    "PromptVersion",
    "RenderedPrompt",
    "alias_prompt",
    "create_prompt",
    "get_prompt",
    "list_prompts",
    "load_prompt_file",
    "prompt_history",
    "render_prompt",
    "rollback_prompt",
]

EXAMPLES = "examples"
"""The reserved template variable holding a version's few-shot examples."""

_NODE_KIND = "prompt-version"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Jinja2 reads these as literals or operators, never as variables.
_JINJA_WORDS = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None"}
)


# --- what a prompt is made of ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptVersion:
    """One immutable prompt version, `NAME@vN`.

    `variables` maps each declared name to {"description", "required"} and, when it has one,
    "default". `aliases` are the aliases pointing at this version. `created` is True only on
    the value `create_prompt` returns when that call made the version.
    """

    name: str
    version: int
    digest: str
    template: str
    variables: dict[str, dict[str, Any]]
    examples: list[dict[str, Any]]
    description: str | None
    created_by: str
    created_at: datetime
    aliases: tuple[str, ...] = ()
    created: bool = False

    @property
    def ref(self) -> str:
        """The reference `NAME@vN`."""
        return f"{self.name}@v{self.version}"

    @property
    def node_id(self) -> str:
        """Its lineage node id, `prompt-version:NAME@vN`."""
        return _node(self.name, self.version)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, times in ISO 8601 UTC."""
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "digest": self.digest,
            "template": self.template,
            "variables": self.variables,
            "examples": self.examples,
            "description": self.description,
            "created_by": self.created_by,
            "created_at": format_time(self.created_at),
            "aliases": list(self.aliases),
        }

    def render(self, variables: Mapping[str, Any]) -> str:
        """This version's text for `variables` (defaults filled), without reading the store.

        The form a server uses: it holds the version and renders it per request.

        Raises:
            InputError: As `render_prompt`.
        """
        return _render(self, _bind(self, dict(variables)))


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """The text a prompt version rendered to, and the variable values it was given (defaults filled)."""

    text: str
    name: str
    version: int
    digest: str
    variables: dict[str, Any]

    @property
    def ref(self) -> str:
        """The reference `NAME@vN` of the version rendered."""
        return f"{self.name}@v{self.version}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "text": self.text,
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "digest": self.digest,
            "variables": self.variables,
        }


@dataclass(frozen=True, slots=True)
class PromptSummary:
    """One prompt in `list_prompts`: its latest version and where each of its aliases points."""

    name: str
    latest: int
    aliases: dict[str, int]
    description: str | None
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "latest": self.latest,
            "aliases": self.aliases,
            "description": self.description,
            "updated_at": format_time(self.updated_at),
        }


# --- validating content ---------------------------------------------------------------------


class _VariableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    description: str | None = None
    required: bool | None = None
    default: JsonValue = None


def _names_as_mapping(value: Any) -> Any:
    """Accept variables as a list of names, turning it into the mapping form."""
    if not isinstance(value, list | tuple):
        return value
    if not all(isinstance(item, str) for item in value):
        raise ValueError(
            f"expected a list of variable names (strings) or a mapping of name to "
            f"{{description, required, default}}; got {list(value)!r}"
        )
    twice = sorted({item for item in value if value.count(item) > 1})
    if twice:
        raise ValueError(f"expected each variable declared once; {', '.join(twice)} appear more than once")
    return dict.fromkeys(value)


class _PromptContent(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    template: str
    variables: Annotated[dict[str, _VariableSpec | None], BeforeValidator(_names_as_mapping)] | None = None
    examples: list[dict[str, JsonValue]] = Field(default_factory=list)
    description: str | None = None


@dataclass(frozen=True, slots=True)
class _Content:
    template: str
    variables: dict[str, dict[str, Any]]
    examples: list[dict[str, Any]]
    description: str | None

    @property
    def digest(self) -> str:
        body = {"template": self.template, "variables": self.variables, "examples": self.examples}
        return sha256_hex(canonical_json(body))


@cache
def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


@lru_cache(maxsize=256)
def _compiled(template: str) -> jinja2.Template:
    # Compiling costs ~1 ms; a gateway renders the same few versions for every request.
    return _environment().from_string(template)


def _validation_problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        where = ".".join(str(part) for part in loc) or "(top level)"
        if error["type"] == "missing":
            problems.append(f"{where}: missing; expected a value")
        elif error["type"] == "extra_forbidden":
            allowed = _PromptContent.model_fields if len(loc) == 1 else _VariableSpec.model_fields
            problems.append(f"{where}: unknown key; expected only {', '.join(allowed)}")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message[:1].lower()}{message[1:]}; got {_shorten(error.get('input'))}")
    return problems


def _shorten(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _normalise_variables(declared: Mapping[str, _VariableSpec | None]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Declared variables in the stored form, sorted by name, and any problems with them."""
    variables: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for name, given in declared.items():
        if name == EXAMPLES:
            problems.append(
                f"variables.{EXAMPLES}: '{EXAMPLES}' is reserved (templates always get the few-shot examples "
                "under that name); remove it from variables"
            )
            continue
        if not _IDENTIFIER.fullmatch(name) or name in _JINJA_WORDS:
            problems.append(
                f"variables.{name}: expected a variable name of ASCII letters, digits and '_', not starting "
                f"with a digit nor a Jinja2 keyword; got {name!r}"
            )
            continue
        spec = given or _VariableSpec()
        has_default = "default" in spec.model_fields_set
        if has_default and spec.required:
            problems.append(
                f"variables.{name}: has a default, so it cannot be required; drop `required` or the default"
            )
        entry: dict[str, Any] = {
            "description": spec.description,
            "required": (not has_default) if spec.required is None else spec.required,
        }
        if has_default:
            entry["default"] = spec.default
        variables[name] = entry
    return dict(sorted(variables.items())), problems


def _used_variables(template: str) -> tuple[set[str], list[str]]:
    """The variables a template reads (besides `examples`), or its syntax error."""
    try:
        parsed = _environment().parse(template)
    except jinja2.TemplateSyntaxError as exc:
        return set(), [f"template: syntax error on line {exc.lineno} of the template: {exc.message}"]
    return set(meta.find_undeclared_variables(parsed)) - {EXAMPLES}, []


def _prepare(raw: Mapping[str, Any], source: str) -> _Content:
    """Validate prompt content, raising one `InputError` that lists every problem found."""
    try:
        parsed = _PromptContent.model_validate(dict(raw))
    except ValidationError as exc:
        raise _problems_error(source, _validation_problems(exc)) from None
    variables, problems = _normalise_variables(parsed.variables or {})
    used, syntax = _used_variables(parsed.template)
    problems += syntax
    if not parsed.variables:
        variables = {name: {"description": None, "required": True} for name in sorted(used)}
    undeclared = sorted(used - variables.keys())
    if undeclared:
        problems.append(
            f"template: uses variables that are not declared: {', '.join(undeclared)}; "
            "declare them or remove them from the template"
        )
    if problems:
        raise _problems_error(source, problems)
    return _Content(parsed.template, variables, [dict(example) for example in parsed.examples], parsed.description)


def _problems_error(source: str, problems: list[str]) -> InputError:
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    return InputError(f"{source} has {count}: " + "; ".join(problems))


def load_prompt_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a prompt YAML file, giving the keyword arguments of `create_prompt`.

    The file holds `template` (required), `variables` (a list of names, or a mapping of name to
    `description`, `required`, `default`), `examples` (a list of mappings) and `description`.

    Args:
        path: The YAML file.

    Returns:
        A dict with keys `template`, `variables` (normalised), `examples` and `description`.

    Raises:
        InputError: The file is missing or unreadable, is not YAML, or has problems; all of its
            problems are listed at once, each with its key path, what was expected and what was found.

    Examples:
        >>> create_prompt(store, "support", **load_prompt_file("support.yaml"))  # doctest: +SKIP
    """
    file = Path(path)
    raw = read_config_file(
        file, "prompt file", holds="a mapping with keys template, variables, examples, description", error=InputError
    )
    content = _prepare(raw, f"prompt file {file}")
    return {
        "template": content.template,
        "variables": content.variables,
        "examples": content.examples,
        "description": content.description,
    }


# --- creating and reading versions ----------------------------------------------------------


def _node(name: str, version: int) -> str:
    return node_id(_NODE_KIND, f"{name}@v{version}")


def _load(conn: Connection, name: str, version: int) -> PromptVersion:
    row = conn.execute(
        select(prompt_versions).where(prompt_versions.c.name == name, prompt_versions.c.version == version)
    ).one()
    pointing = sorted(alias for alias, target in aliases_of(conn, "prompt", name).items() if target == version)
    return PromptVersion(
        name=row.name,
        version=row.version,
        digest=row.digest,
        template=row.template,
        variables=json.loads(row.variables),
        examples=json.loads(row.examples),
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
        aliases=tuple(pointing),
    )


def create_prompt(
    store: Store,
    name: str,
    template: str,
    *,
    variables: Sequence[str] | Mapping[str, Any] | None = None,
    examples: Sequence[Mapping[str, Any]] | None = None,
    description: str | None = None,
) -> PromptVersion:
    """Register a prompt version, or return the latest one unchanged if its content is the same.

    Content is the template, variables and examples; a different `description` alone does not make
    a new version. A new version `NAME@vN` becomes lineage node `prompt-version:NAME@vN`, derived
    from `NAME@v(N-1)`, and is recorded in the audit log as `prompt.create`, all in one transaction.

    Args:
        store: The workspace's store.
        name: The prompt name, e.g. `support-answer`.
        template: Jinja2 template text; `{{ examples }}` is always the version's few-shot examples.
        variables: The variables the template reads: a list of names (all required), or a mapping
            of name to {"description": str, "required": bool, "default": any JSON value} (a default
            makes it optional). When none are declared, those the template uses become required.
        examples: Few-shot examples, each a mapping such as {"input": ..., "output": ...}.
        description: What the prompt is for.

    Returns:
        The version; `created` says whether this call made it.

    Raises:
        InputError: A bad name, a template syntax error, variables used but not declared, or
            malformed variables or examples (all problems listed at once).

    Examples:
        >>> create_prompt(store, "greet", "Hello {{ who }}!", variables=["who"]).ref  # doctest: +SKIP
        'greet@v1'
    """
    check_name(name, "prompt")
    raw = {
        "template": template,
        "variables": dict(variables) if isinstance(variables, Mapping) else variables,
        "examples": [dict(example) if isinstance(example, Mapping) else example for example in examples or []],
        "description": description,
    }
    content = _prepare(raw, f"prompt {name!r}")
    require(store, "prompt.create", f"prompt:{name}")
    with store.db.write() as conn:
        at = store.clock()
        lock_name(conn, prompts, name, at)
        latest = latest_version(conn, "prompt", name)
        if latest is not None:
            current = _load(conn, name, latest)
            if current.digest == content.digest:
                return current
        return _insert_version(store, conn, name, (latest or 0) + 1, content, at)


def _insert_version(
    store: Store, conn: Connection, name: str, version: int, content: _Content, at: datetime
) -> PromptVersion:
    conn.execute(
        prompt_versions.insert().values(
            name=name,
            version=version,
            digest=content.digest,
            template=content.template,
            variables=canonical_json(content.variables),
            examples=canonical_json(content.examples),
            description=content.description,
            created_by=store.actor,
            created_at=at,
        )
    )
    node = _node(name, version)
    add_node(conn, node, at=at)
    if version > 1:
        add_edge(conn, _node(name, version - 1), node, "derived_from", at=at)
    store.audit(conn, "prompt.create", node, {"digest": content.digest, "variables": list(content.variables)})
    return PromptVersion(
        name=name,
        version=version,
        digest=content.digest,
        template=content.template,
        variables=content.variables,
        examples=content.examples,
        description=content.description,
        created_by=store.actor,
        created_at=at,
        created=True,
    )


def get_prompt(store: Store, ref: str | Ref) -> PromptVersion:
    """The prompt version a reference points at.

    Args:
        store: The workspace's store.
        ref: `NAME` or `NAME@latest` (the newest version), `NAME@vN`, or `NAME@<alias>`.

    Returns:
        The version, with the aliases pointing at it.

    Raises:
        InputError: `ref` is not a reference.
        NotFoundError: No such prompt, version or alias (the message says which exist).
    """
    parsed = ref if isinstance(ref, Ref) else parse_ref(ref, "prompt")
    with store.db.read() as conn:
        version = resolve_version(conn, "prompt", parsed)
        return _load(conn, parsed.name, version)


def list_prompts(store: Store) -> list[PromptSummary]:
    """Every prompt by name, with its latest version, that version's description, and its aliases."""
    latest = (
        select(prompt_versions.c.name, func.max(prompt_versions.c.version).label("latest"))
        .group_by(prompt_versions.c.name)
        .subquery()
    )
    query = (
        select(latest.c.name, latest.c.latest, prompt_versions.c.description, prompt_versions.c.created_at)
        .join(
            prompt_versions,
            and_(prompt_versions.c.name == latest.c.name, prompt_versions.c.version == latest.c.latest),
        )
        .order_by(latest.c.name)
    )
    with store.db.read() as conn:
        pointers: dict[str, dict[str, int]] = {}
        for row in conn.execute(
            select(aliases.c.name, aliases.c.alias, aliases.c.version)
            .where(aliases.c.subject == "prompt")
            .order_by(aliases.c.alias)
        ):
            pointers.setdefault(row.name, {})[row.alias] = int(row.version)
        return [
            PromptSummary(row.name, int(row.latest), pointers.get(row.name, {}), row.description, row.created_at)
            for row in conn.execute(query)
        ]


# --- rendering ------------------------------------------------------------------------------


def render_prompt(store: Store, ref: str | Ref, variables: Mapping[str, Any] | None = None) -> RenderedPrompt:
    """Render a prompt version in Jinja2's sandbox; reads only, writes nothing.

    Args:
        store: The workspace's store.
        ref: `NAME`, `NAME@vN`, `NAME@latest` or `NAME@<alias>`.
        variables: A value for each required variable, and optionally for optional ones; defaults
            fill those not given.

    Returns:
        The text, the version rendered and the values used.

    Raises:
        InputError: Required variables missing or undeclared ones given (all listed at once), the
            template tried an unsafe operation, or it failed on the values given.
        NotFoundError: No such prompt, version or alias.

    Examples:
        >>> render_prompt(store, "greet@production", {"who": "Ada"}).text  # doctest: +SKIP
        'Hello Ada!'
    """
    prompt = get_prompt(store, ref)
    values = _bind(prompt, dict(variables or {}))
    return RenderedPrompt(_render(prompt, values), prompt.name, prompt.version, prompt.digest, values)


def _describe(name: str, spec: Mapping[str, Any]) -> str:
    return f"{name} ({spec['description']})" if spec.get("description") else name


def _bind(prompt: PromptVersion, given: dict[str, Any]) -> dict[str, Any]:
    """The values to render with, defaults filled; one `InputError` listing every problem otherwise."""
    declared = prompt.variables
    problems = []
    missing = [_describe(name, spec) for name, spec in declared.items() if spec["required"] and name not in given]
    if missing:
        problems.append(f"missing required variables: {', '.join(missing)}")
    unexpected = sorted(set(given) - declared.keys())
    if unexpected:
        reserved = f" ('{EXAMPLES}' is reserved for the version's few-shot examples)" if EXAMPLES in unexpected else ""
        problems.append(
            f"unexpected variables not declared by {prompt.ref}: {', '.join(unexpected)}{reserved} "
            f"(it declares: {', '.join(declared) or 'none'})"
        )
    if problems:
        raise InputError(
            f"cannot render {prompt.ref}: " + "; ".join(problems),
            hint=f"pass every required variable and only declared ones (see `keel prompt show {prompt.ref}`)",
        )
    defaults = {name: spec["default"] for name, spec in declared.items() if "default" in spec and name not in given}
    return {**defaults, **given}


def _render(prompt: PromptVersion, values: dict[str, Any]) -> str:
    try:
        return _compiled(prompt.template).render({**values, EXAMPLES: prompt.examples})
    except SecurityError as exc:
        raise InputError(
            f"{prompt.ref}'s template tried an unsafe operation, which the sandbox refused: {str(exc).rstrip('.')}",
            hint="templates may read their variables and use filters and tests, but not Python internals",
        ) from None
    except jinja2.UndefinedError as exc:
        raise InputError(
            f"rendering {prompt.ref} failed: {exc.message}",
            hint="an optional variable without a default is undefined unless passed: "
            "test it with `is defined`, or give it a default",
        ) from None
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
        raise InputError(f"rendering {prompt.ref} failed on the values given: {type(exc).__name__}: {exc}") from None


# --- aliases --------------------------------------------------------------------------------


def alias_prompt(
    store: Store, name: str, alias: str, version: int | str, *, reason: str, evidence: str | None = None
) -> AliasEvent:
    """Point an alias of a prompt (e.g. `production`) at one of its versions, recording who and why.

    Args:
        store: The workspace's store.
        name: The prompt name.
        alias: The alias to move, e.g. `production`.
        version: `3`, `"3"`, `"v3"`, `"latest"`, another alias of the same prompt, or `NAME@…`.
        reason: Why; kept in the alias history.
        evidence: An optional id supporting the move, e.g. an eval result.

    Returns:
        The recorded alias event.

    Raises:
        InputError: A malformed alias or version, or an empty reason.
        NotFoundError: No such prompt or version.
    """
    return set_alias(store, "prompt", name, alias, version, reason=reason, evidence=evidence)


def rollback_prompt(store: Store, name: str, alias: str, *, reason: str, evidence: str | None = None) -> AliasEvent:
    """Move an alias back to the version it pointed at before its last move.

    Raises:
        NotFoundError: No such prompt, or the alias has no earlier version.
    """
    return roll_back_alias(store, "prompt", name, alias, reason=reason, evidence=evidence)


def prompt_history(store: Store, name: str, alias: str | None = None) -> list[AliasEvent]:
    """Every alias move of a prompt, or of one of its aliases, oldest first.

    Raises:
        NotFoundError: No prompt is named `name`.
    """
    return alias_history(store, "prompt", name, alias)
