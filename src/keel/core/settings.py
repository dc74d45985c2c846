"""Every Keel setting, declared once: its `KEEL_*` variable, its `keel.yaml` key, type and default.

Precedence: explicit argument > environment (`KEEL_*`) > the workspace's `keel.yaml` > default.
The workspace is found like git finds a repository: `KEEL_WORKSPACE`, else the nearest
directory at or above the working directory holding a `keel.yaml`. This is the only module
of Keel that reads `os.environ`; of its own accord it opens nothing but `keel.yaml`.

It also holds `read_config_file`, with which every loader of a file the user names (a recipe,
a training config, an eval suite, a prompt file, ...) turns each way the file can be unusable
into one `KeelError` line, worded the same everywhere.
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from keel.core.echo import shown, without_credentials
from keel.core.errors import ConfigError, KeelError, WorkspaceNotFoundError
from keel.core.ids import DuplicateKeyError, unique_pairs

__all__ = [
    "CONFIG_FILE",
    "CONFIG_VERSION",
    "ENV_PREFIX",
    "MAX_CONFIG_VALUES",
    "STATE_DIR",
    "Settings",
    "find_workspace",
    "load_settings",
    "not_utf8_message",
    "read_config_file",
    "read_text_file",
    "workspace_template",
]

ENV_PREFIX = "KEEL_"
CONFIG_FILE = "keel.yaml"
STATE_DIR = ".keel"
CONFIG_VERSION = 1


class Settings(BaseModel):
    """Resolved settings of one Keel workspace.

    Build it with `load_settings()`, which finds the workspace, merges its sources (arguments over
    `KEEL_*` variables over `keel.yaml`) and reports every bad value at once with where it came from.

    Examples:
        >>> settings = load_settings("/srv/ws")  # a folder holding keel.yaml
        >>> settings.resolved_database_url
        'sqlite:////srv/ws/.keel/keel.db'
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    workspace: Path = Field(description="Root directory of the workspace (the folder holding keel.yaml).")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database; default SQLite at .keel/keel.db. "
        "PostgreSQL: postgresql://user:password@host:5432/dbname.",
    )
    blob_url: str | None = Field(
        default=None,
        description="Directory or fsspec URL (s3://bucket/prefix) of the blob store; default .keel/blobs.",
    )
    blob_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options for blob_url, e.g. {endpoint_url: http://127.0.0.1:9000} "
        "for an S3-compatible server (JSON in the environment).",
    )
    actor: str | None = Field(
        default=None,
        description="On whose behalf the authenticated principal acts: recorded in the audit log as an "
        "'on behalf of' note beside the principal, never as the actor itself.",
    )
    api_key: str | None = Field(
        default=None,
        description="Act as this API key's principal (key:<id>) instead of the local OS user; the key "
        "(keel_<id>_<secret>) is verified against the workspace's argon2 hashes before any change.",
    )
    audit_key: str | None = Field(
        default=None,
        description="The audit log's secret key (64 hex digits): HMAC of every event and the Ed25519 key "
        "that signs checkpoints. Unset: .keel/audit.key (0600), created on first use. Keep it out of the database.",
    )
    ui_secret: str | None = Field(
        default=None,
        description="Signs the web console's session cookies (`keel ui`); set the same value on every replica "
        "so sessions survive restarts. Unset: a random secret per process (signing in again after a restart).",
    )
    shared: bool = Field(
        default=False,
        description="Share the workspace with the OS group of its folder: .keel 2770, the database 660, "
        "blobs 0440. Default: the owner only (700, 600, 0400).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING", description="Threshold of Keel's log messages."
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP endpoint (e.g. http://127.0.0.1:4318) the gateway exports its traces to as "
        "OpenTelemetry spans with GenAI attributes; unset: no export.",
    )

    llama_cpp_source: Path | None = Field(
        default=None,
        description="Where `keel model export-gguf` finds llama.cpp's convert_hf_to_gguf.py: a llama.cpp checkout, "
        "or a llama-cpp-python source distribution (.tar.gz) whose vendored copy is unpacked once; default the "
        "installed llama-cpp-python version's sdist in ~/.cache/keel-wheels.",
    )

    govern_key_file: Path | None = Field(
        default=None,
        description="File holding the workspace's governance keys (subject hashing, erasure certificates), "
        "kept outside the database; default .keel/govern.key, created 0600 on first use.",
    )
    govern_key: str | None = Field(
        default=None,
        description="The governance keyring itself, as the JSON a key file holds (for containers); "
        "takes the place of govern_key_file.",
    )

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        """The `.keel` directory holding the embedded database and blobs."""
        return self.workspace / STATE_DIR

    @property
    def resolved_database_url(self) -> str:
        """The database URL to connect to, with the embedded SQLite default filled in."""
        if self.database_url is None:
            return f"sqlite:///{self.state_dir / 'keel.db'}"
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and not self.database_url.startswith(prefix + "/"):
            relative = self.database_url[len(prefix) :]
            if relative and relative != ":memory:":
                return f"{prefix}{self.workspace / relative}"
        return self.database_url

    @property
    def resolved_blob_url(self) -> str:
        """The blob store location: a local absolute path or an fsspec URL."""
        if self.blob_url is None:
            return str(self.state_dir / "blobs")
        if "://" in self.blob_url:
            return self.blob_url
        path = Path(self.blob_url).expanduser()
        return str(path if path.is_absolute() else self.workspace / path)

    @property
    def resolved_govern_key_file(self) -> Path:
        """Where the governance keyring lives: `govern_key_file`, relative to the workspace, or .keel/govern.key."""
        if self.govern_key_file is None:
            return self.state_dir / "govern.key"
        path = self.govern_key_file.expanduser()
        return path if path.is_absolute() else self.workspace / path

    @property
    def resolved_actor(self) -> str:
        """The local principal: `local:<OS user name>` of the effective user id.

        Read from the password database, not from `USER`/`LOGNAME` (which `getpass.getuser` trusts and
        anyone can set): the OS account is what authenticated this process. `actor` never replaces it;
        it is the "on behalf of" note (`on_behalf_of`).
        """
        try:
            return f"local:{pwd.getpwuid(os.geteuid()).pw_name}"
        except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary uid in a container
            return f"local:uid{os.geteuid()}"

    @property
    def on_behalf_of(self) -> str | None:
        """Who the principal says it acts for (`KEEL_ACTOR`), recorded as a note beside the actor."""
        return self.actor or None

    @property
    def audit_key_file(self) -> Path:
        """Where the audit key is kept when `audit_key` is unset: `.keel/audit.key`, mode 0600."""
        return self.state_dir / "audit.key"

    def source_of(self, name: str) -> str:
        """Say where setting `name` came from, for error messages.

        Examples:
            >>> load_settings("/srv/ws").source_of("blob_url")  # with KEEL_BLOB_URL set
            'KEEL_BLOB_URL'
        """
        return self._sources.get(name, "the default")


class _ProjectFileSource:
    """Values from the workspace's `keel.yaml`, below arguments and environment in precedence."""

    def __init__(self, workspace: Path | None) -> None:
        self.workspace = find_workspace(workspace)
        self.data = _read_config(self.workspace / CONFIG_FILE)

    def __call__(self) -> dict[str, Any]:
        return {"workspace": self.workspace, **self.data}


# Settings are read from the environment here rather than by pydantic-settings: its import (asyncio, ssl,
# argparse, its cloud sources) cost ~0.1-0.17 CPU-s on every command that opens a workspace, about a tenth of
# a `keel curate run` on 15 MB. The rules are pydantic-settings' for these fields: `KEEL_<NAME>`, matched
# without regard to case; a mapping-valued setting holds JSON; every other value is validated from its text.
_JSON_FIELDS = ("blob_options",)


def _environment_values() -> dict[str, Any]:
    """The `KEEL_*` variables naming a setting, by setting name (JSON decoded where the setting is a mapping)."""
    prefix = ENV_PREFIX.lower()
    fields = Settings.model_fields
    values: dict[str, Any] = {}
    for key, value in os.environ.items():
        name = key.lower()
        if not name.startswith(prefix) or (name := name[len(prefix) :]) not in fields:
            continue
        if name in _JSON_FIELDS:
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(
                    f"{name} (from {key}): expected JSON such as "
                    f'{{"endpoint_url": "http://127.0.0.1:9000"}}; got {shown(value)}'
                ) from None
        values[name] = value
    return values


def _read_config(path: Path) -> dict[str, Any]:
    data = read_config_file(path, "workspace config", holds="a mapping of settings", empty_ok=True)
    version = data.pop("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise ConfigError(
            f"{path} has version {version!r}; this Keel reads version {CONFIG_VERSION}",
            hint="upgrade Keel (`pip install -U keel-llmops`) or recreate the file with `keel init`",
        )
    if "workspace" in data:
        raise ConfigError(f"{path} sets `workspace`; the workspace is the folder holding keel.yaml, remove the key")
    return data


def not_utf8_message(path: str | os.PathLike[str], exc: UnicodeDecodeError) -> str:
    r"""Say which byte of a text file Keel reads as UTF-8 (keel.yaml, recipes, expectations) is not UTF-8.

    Examples:
        >>> try:
        ...     b"a: caf\xe9".decode("utf-8")
        ... except UnicodeDecodeError as exc:
        ...     not_utf8_message("keel.yaml", exc)
        'keel.yaml: expected UTF-8 text; byte 0xe9 at line 1, column 7 is not UTF-8'
    """
    data = exc.object
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    return f"{path}: expected UTF-8 text; byte 0x{data[exc.start]:02x} at line {line}, column {column} is not UTF-8"


def read_text_file(path: str | os.PathLike[str], what: str, *, error: type[KeelError] = ConfigError) -> str:
    """Read a UTF-8 text file the user named (a leading byte order mark is dropped), or raise one `error`.

    Args:
        path: The file.
        what: What the file is, for the message: "recipe", "training config", "ratings file".
        error: The `KeelError` subclass to raise (all of them exit 2).

    Raises:
        KeelError: (`error`) Nothing is at `path`, it is a directory, it cannot be read, or it is not UTF-8;
            the message names the file, what was expected, what was found and what to do.

    Examples:
        >>> read_text_file("/nonexistent.yaml", "recipe")
        Traceback (most recent call last):
        ...
        keel.core.errors.ConfigError: recipe /nonexistent.yaml: expected a file; nothing is there; check the path
    """
    where = f"{what} {path}"
    try:
        # utf-8-sig: drop the byte order mark Excel and Notepad put first (it would become part of a CSV header).
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error(f"{where}: expected a file; nothing is there", hint="check the path") from None
    except IsADirectoryError:
        raise error(f"{where}: expected a file; found a directory", hint="pass the file itself") from None
    except OSError as exc:
        raise error(f"{where}: expected a readable file; {exc.strerror}", hint="check its permissions") from None
    except UnicodeDecodeError as exc:
        raise error(not_utf8_message(where, exc), hint="save it as UTF-8") from None


def read_config_file(
    path: str | os.PathLike[str],
    what: str,
    *,
    holds: str = "a mapping",
    syntax: Literal["yaml", "json"] = "yaml",
    error: type[KeelError] = ConfigError,
    empty_ok: bool = False,
) -> dict[str, Any]:
    """Read a YAML (or JSON) file the user named that must hold a mapping; any other content is one `error`.

    Args:
        path: The file.
        what: What the file is, for the message: "recipe", "training config", "eval suite".
        holds: What it must hold, for the message: "a mapping with inputs, output and steps".
        syntax: `yaml` (JSON is valid YAML too) or `json` (strict JSON, as a `.json` file promises).
        error: The `KeelError` subclass to raise (all of them exit 2).
        empty_ok: An empty file (or one holding only comments or `null`) means an empty mapping.

    Returns:
        The mapping, still to be validated by the caller.

    Raises:
        KeelError: (`error`) Any problem `read_text_file` reports; a syntax error (with its line and
            column); content nested too deeply; an empty file; anything but a mapping at the top; or
            more than `MAX_CONFIG_VALUES` values once aliases are expanded.

    Examples:
        >>> read_config_file("suite.yaml", "eval suite", holds="a mapping with name, subject, metrics and cases")
        ... # doctest: +SKIP
        ConfigError: eval suite suite.yaml: expected a mapping with name, subject, metrics and cases; found a list
    """
    where = f"{what} {path}"
    text = read_text_file(path, what, error=error)
    try:
        if syntax == "json" and text.strip():
            data = json.loads(text, object_pairs_hook=unique_pairs)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader that also refuses repeated keys
    except DuplicateKeyError as exc:
        raise error(f"{where}: expected each key once in a mapping; {exc}", hint="keep one of them") from None
    except json.JSONDecodeError as exc:
        raise error(
            f"{where}: expected JSON; line {exc.lineno}, column {exc.colno}: {exc.msg}", hint="fix the file there"
        ) from None
    except yaml.YAMLError as exc:
        raise error(f"{where}: expected YAML; {_yaml_problem(exc)}", hint="fix the file there") from None
    except RecursionError:
        raise error(f"{where}: expected {holds}; found values nested too deeply to read") from None
    if data is None and empty_ok:
        return {}
    if data is None:
        found = "the file is empty" if not text.strip() else "it holds only comments or null"
        raise error(f"{where}: expected {holds}; {found}")
    if not isinstance(data, dict):
        raise error(f"{where}: expected {holds}; found {_a(type(data).__name__)} at the top")
    if _more_values_than(data, MAX_CONFIG_VALUES):
        raise error(
            f"{where}: expected at most {MAX_CONFIG_VALUES:,} values; found more once its YAML aliases (*name) "
            "are expanded",
            hint="use fewer aliases, or keep large data in a dataset the file names",
        )
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` refusing a mapping that repeats a key (YAML 1.2 forbids it; PyYAML keeps the last).

    A pipeline's second stage `train:` would otherwise replace the first without a word. Keys merged in with
    `<<: *anchor` may be overridden, as YAML intends: only the mapping's own keys are compared.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._checked: dict[int, yaml.MappingNode] = {}  # by id, holding the node so its id stays its own

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # PyYAML merges `<<` keys into `node.value` in place, and does so for an anchored mapping merged by
        # another before the anchored one is built: compare each mapping's own keys once, before that.
        if id(node) not in self._checked:
            self._checked[id(node)] = node
            self._refuse_repeated(node)
        super().flatten_mapping(node)

    def _refuse_repeated(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: the base class refuses it with its own message
            if first is not key_node.start_mark:
                raise DuplicateKeyError(
                    f"line {key_node.start_mark.line + 1}: key {shown(key)} repeats the one on line {first.line + 1}"
                )


# A few hundred bytes of nested YAML aliases expand to billions of values ("billion laughs"), which
# validating and printing would hold in memory; no config Keel reads comes near this many.
MAX_CONFIG_VALUES = 1_000_000


def _more_values_than(data: Any, limit: int) -> bool:
    """Count values as validation would see them (each alias expanded), stopping past `limit`."""
    stack, seen = [data], 0
    while stack:
        value = stack.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line saying where and what: PyYAML's own message spans several lines."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = ", ".join(part for part in (exc.context, exc.problem) if part)
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(exc).split())


def _a(type_name: str) -> str:
    names = {"list": "a list", "str": "a string", "int": "a number", "float": "a number", "bool": "a boolean"}
    return names.get(type_name, f"a {type_name}")


def find_workspace(start: Path | None = None) -> Path:
    """Find the workspace root: `start` if given, else `KEEL_WORKSPACE`, else walk up from the cwd.

    Args:
        start: A directory that must itself be a workspace (holding `keel.yaml`).

    Returns:
        The absolute path of the workspace root.

    Raises:
        WorkspaceNotFoundError: No `keel.yaml` where one was expected.

    Examples:
        >>> find_workspace(Path("/nonexistent"))
        Traceback (most recent call last):
        ...
        keel.core.errors.WorkspaceNotFoundError: expected a Keel workspace at /nonexistent ...
    """
    if start is None and (env := os.environ.get(f"{ENV_PREFIX}WORKSPACE")):
        root = Path(env).expanduser().resolve()
        if not _holds_config(root):
            raise WorkspaceNotFoundError(
                f"KEEL_WORKSPACE points to {root}, which holds no {CONFIG_FILE}",
                hint=f"run `keel init {root}` or unset KEEL_WORKSPACE",
            )
        return root
    if start is not None:
        root = start.expanduser().resolve()
        if not _holds_config(root):
            raise WorkspaceNotFoundError(
                f"expected a Keel workspace at {root} (a folder holding {CONFIG_FILE}); found none",
                hint=f"run `keel init {root}` to create one",
            )
        return root
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if _holds_config(candidate):
            return candidate
    raise WorkspaceNotFoundError(
        f"expected a Keel workspace ({CONFIG_FILE}) in {cwd} or any parent directory; found none",
        hint="run `keel init` here, `keel init DIR` elsewhere, or set KEEL_WORKSPACE",
    )


def _holds_config(folder: Path) -> bool:
    """Whether `folder` holds a `keel.yaml`; a path the OS refuses (too long, not searchable) holds none."""
    try:
        return (folder / CONFIG_FILE).is_file()
    except OSError:  # e.g. ENAMETOOLONG for a --workspace of thousands of characters
        return False


def load_settings(workspace: Path | str | None = None, **overrides: Any) -> Settings:
    """Resolve the settings of a workspace, reporting every bad value at once.

    Args:
        workspace: The workspace root; found from `KEEL_WORKSPACE` or the cwd when omitted.
        **overrides: Explicit setting values, which beat the environment and `keel.yaml`.

    Returns:
        The validated settings, remembering where each value came from.

    Raises:
        WorkspaceNotFoundError: No workspace could be found.
        ConfigError: One or more values are invalid; each is named with its source.

    Examples:
        >>> load_settings("/nonexistent")
        Traceback (most recent call last):
        ...
        keel.core.errors.WorkspaceNotFoundError: expected a Keel workspace at /nonexistent ...
    """
    if workspace is not None:
        overrides["workspace"] = Path(workspace)
    file_source = _ProjectFileSource(overrides.get("workspace"))
    sources = _describe_sources(file_source, overrides)
    try:
        settings = Settings(**_merged(file_source(), _environment_values(), overrides))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            origin = sources.get(name, "an argument")
            problems.append(f"{name} (from {origin}): {err['msg']}; got {shown(err.get('input'))}")
        raise ConfigError("invalid settings: " + " | ".join(problems)) from None
    settings._sources = sources
    _check_database_url(settings)
    return settings


def _merged(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers over earlier ones; mappings are merged key by key, as pydantic-settings merges its sources."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                value = _merged(merged[key], value)
            merged[key] = value
    return merged


def _describe_sources(file_source: _ProjectFileSource, overrides: dict[str, Any]) -> dict[str, str]:
    sources: dict[str, str] = {}
    config_path = file_source.workspace / CONFIG_FILE
    for name in Settings.model_fields:
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if name in overrides:
            sources[name] = "an explicit argument"
        elif env_name in os.environ:
            sources[name] = env_name
        elif name in file_source.data:
            sources[name] = f"`{name}` in {config_path}"
    for name in file_source.data.keys() - Settings.model_fields.keys():  # unknown keys, reported as such
        sources[name] = f"`{name}` in {config_path}"
    return sources


def _check_database_url(settings: Settings) -> None:
    if settings.database_url is None:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    origin = settings.source_of("database_url")
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        raise ConfigError(
            f"{origin} is not a database URL: expected e.g. postgresql://user@host:5432/keel "
            f"or sqlite:///path/keel.db; got {shown(without_credentials(settings.database_url))}",
            hint="fix or unset it (unset means the embedded SQLite database)",
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"{origin} names the {url.get_backend_name()!r} database; Keel supports sqlite and postgresql",
            hint="point it at PostgreSQL or unset it for the embedded SQLite database",
        )


def workspace_template() -> str:
    """The text of a fresh `keel.yaml`, documenting every setting it may hold."""
    lines = [
        "# Keel workspace. KEEL_* environment variables override these values.",
        f"version: {CONFIG_VERSION}",
    ]
    for name, field in Settings.model_fields.items():
        if name == "workspace":
            continue
        lines.append(f"# {name}: {field.description}  (env: {ENV_PREFIX}{name.upper()})")
    return "\n".join(lines) + "\n"
