"""The model registry: model files stored as blobs under a manifest, versioned as `NAME@vN`.

Registering uploads each file (streamed, content-addressed, so unchanged shards of a new version
cost nothing), then writes the version, its lineage and an audit event in one transaction. A
version is immutable; aliases (`production`, …) move between versions with a recorded reason.
Pulling restores every file and verifies it against its digest.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import Connection, select

from keel.core.clock import format_time
from keel.core.errors import InputError, IntegrityError, NotFoundError
from keel.core.ids import canonical_json
from keel.govern._access import require
from keel.registry._aliases import (
    AliasEvent,
    alias_history,
    aliases_of,
    lock_name,
    resolve_version,
    roll_back_alias,
    set_alias,
)
from keel.registry._marks import marks_for
from keel.registry._refs import Ref, check_name, parse_ref
from keel.registry._scan import ScanReport, scan_files
from keel.store import BlobInfo, Store, add_edge, add_node, read_bytes
from keel.store.schema import model_versions, models, run_artifacts, runs

__all__ = [
    "ManifestFile",
    "ModelInfo",
    "ModelVersion",
    "UnsafeModelError",
    "detect_format",
    "alias_model",
    "get_model",
    "list_models",
    "model_history",
    "pull_model",
    "register_model",
    "rollback_model",
    "scan_model",
]

MANIFEST_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class ManifestFile:
    """One file of a model version: where it goes, and the blob holding it."""

    path: str
    digest: str
    size: int


@dataclass
class ModelVersion:
    """A registered model version, with its files and the aliases pointing at it."""

    name: str
    version: int
    manifest_digest: str
    format: str
    size: int
    file_count: int
    run_id: str | None
    base_model: str | None
    info: dict[str, Any]
    created_by: str
    created_at: datetime
    aliases: list[str] = field(default_factory=list)
    files: list[ManifestFile] = field(default_factory=list)
    erased_data: list[dict[str, Any]] = field(default_factory=list)  # erasure marks: "trained on erased data"

    @property
    def ref(self) -> str:
        """`NAME@vN`."""
        return f"{self.name}@v{self.version}"

    @property
    def node(self) -> str:
        """The version's lineage node id."""
        return f"model-version:{self.ref}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ref": self.ref,
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "size": self.size,
            "file_count": self.file_count,
            "manifest": self.manifest_digest,
            "run": self.run_id,
            "base_model": self.base_model,
            "info": self.info,
            "aliases": self.aliases,
            "created_by": self.created_by,
            "created_at": format_time(self.created_at),
            "files": [_entry(f) for f in self.files],
            "erased_data": self.erased_data,
        }


def detect_format(paths: list[str]) -> str:
    """Name the layout of a model's files: `peft-adapter`, `hf`, `gguf` or `files`.

    Examples:
        >>> detect_format(["config.json", "model.safetensors", "tokenizer.json"])
        'hf'
    """
    names = {PurePosixPath(p).name for p in paths}
    if "adapter_config.json" in names:
        return "peft-adapter"
    if "config.json" in names and any(n.endswith((".safetensors", ".bin")) for n in names):
        return "hf"
    if any(n.endswith(".gguf") for n in names):
        return "gguf"
    return "files"


def _safe_relative(path: str) -> str:
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise InputError(f"expected a relative file path inside the model; got {path!r}")
    return pure.as_posix()


def _local_files(source: Path) -> list[tuple[str, Path]]:
    """Every file under `source` (or `source` itself), by path relative to it.

    Symbolic links are followed only while they stay inside `source`: registering stores bytes,
    and bytes from elsewhere (a link to ~/.ssh, to /etc) must not leave the machine as a model.
    """
    if not source.exists():
        if source.is_symlink():
            raise InputError(f"expected a model directory or file to register; {source} is a broken symbolic link")
        raise InputError(f"expected a model directory or file to register; {source} does not exist")
    if source.is_file():
        return [(source.name, source)]
    root = source.resolve()
    files: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(source, followlinks=True):
        here = Path(folder)
        real = here.resolve()
        if any((source / parent).resolve() == real for parent in here.relative_to(source).parents):
            dirs.clear()  # a link back to a folder it is inside of: walking it would never end
            continue
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in [*dirs, *names]:
            _check_link(here / name, source, root)
        for name in sorted(names):
            path = here / name
            if path.is_file():
                files.append((path.relative_to(source).as_posix(), path))
    if not files:
        raise InputError(f"expected model files in {source}; the directory is empty")
    return sorted(files, key=lambda item: PurePosixPath(item[0]).parts)  # the order registered versions used


def _check_link(path: Path, source: Path, root: Path) -> None:
    if not path.is_symlink():
        return
    target = path.resolve()
    if not target.exists():
        raise InputError(
            f"{path} is a symbolic link to {os.readlink(path)}, which does not exist",
            hint="remove the link or restore its target, then register again",
        )
    if target != root and root not in target.parents:
        raise InputError(
            f"{path} is a symbolic link to {target}, outside the folder being registered ({source}); "
            "Keel stores no file from outside it",
            hint="copy the file into the folder, or remove the link",
        )


def _upload(store: Store, path: Path | None, run_id: str | None, conn: Connection | None = None) -> list[ManifestFile]:
    if path is not None:
        # One short transaction per file (unless re-uploading inside one): a multi-GB upload must
        # not hold the database's write lock.
        uploaded = []
        for rel, file in _local_files(path):
            info = store.put_blob(file, conn)
            uploaded.append(ManifestFile(rel, info.digest, info.size))
        return uploaded
    with store.db.read() as conn:
        if conn.scalar(select(runs.c.id).where(runs.c.id == run_id)) is None:
            raise NotFoundError(f"no run {run_id!r} to register a model from", hint="see `keel run list`")
        rows = conn.execute(
            select(run_artifacts).where(run_artifacts.c.run_id == run_id).order_by(run_artifacts.c.path)
        ).all()
    if not rows:
        raise InputError(f"run {run_id} logged no artifacts to register as a model; pass the model's PATH instead")
    return [ManifestFile(row.path, row.digest, int(row.size)) for row in rows]


@dataclass(frozen=True)
class ModelInfo:
    """Free-text fields of a model version that its card shows."""

    description: str | None = None
    intended_use: str | None = None
    limitations: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Only the fields that are set."""
        data = {"description": self.description, "intended_use": self.intended_use, "limitations": self.limitations}
        return {**{k: v for k, v in data.items() if v is not None}, **self.extra}


def register_model(
    store: Store,
    name: str,
    path: str | os.PathLike[str] | None = None,
    *,
    run_id: str | None = None,
    base_model: str | None = None,
    info: ModelInfo | None = None,
    allow_unsafe: bool = False,
) -> tuple[ModelVersion, bool]:
    """Register a model directory (or a run's artifacts) as the next version of `name`.

    The files are scanned first (`keel.registry._scan`): a pickle that imports or calls, an
    executable or a malformed safetensors header refuses the registration unless `allow_unsafe`,
    which registers it anyway and audits the findings.

    Args:
        store: The workspace store.
        name: The model's name.
        path: A model directory (Hugging Face layout, an adapter) or a single file (GGUF).
        run_id: The run that produced it: lineage `run → model-version`, and its artifacts
            are the files when `path` is omitted.
        base_model: What it was tuned from: a registry ref (`base@v1`, linked in lineage),
            a hub id or a path.
        info: Description, intended use and limitations for the model card.
        allow_unsafe: Register files the scan finds dangerous (audited as `model.register.unsafe`).

    Returns:
        The version, and whether it is new (False when the same files are already the latest version).

    Raises:
        UnsafeModelError: The scan found something dangerous and `allow_unsafe` is False.
    """
    check_name(name)
    if path is None and run_id is None:
        raise InputError("expected a model PATH to register or --run RUN whose artifacts are the model")
    require(store, "model.register", f"model:{name}")
    report = scan_files(_local_files(Path(path))) if path is not None else None
    if report is not None and not report.safe and not allow_unsafe:
        raise UnsafeModelError(
            f"refusing to register {name}: {report.summary()}",
            hint="inspect the files with `keel scan`; pass --allow-unsafe to register them anyway (audited)",
        )
    files = _upload(store, Path(path) if path is not None else None, run_id)
    for f in files:
        _safe_relative(f.path)
    fmt = detect_format([f.path for f in files])
    manifest = canonical_json({"schema": MANIFEST_SCHEMA, "format": fmt, "files": [_entry(f) for f in files]})
    manifest_info = store.put_blob(io.BytesIO(manifest.encode()))
    with store.db.write() as conn:
        if store.missing_blobs(conn, [f.digest for f in files] + [manifest_info.digest]):
            # `keel gc` removed uploads older than its grace period before this transaction: upload
            # them again now, registered in it; gc cannot run until it ends.
            files = _upload(store, Path(path) if path is not None else None, run_id, conn)
            manifest_info = store.put_blob(io.BytesIO(manifest.encode()), conn)
        model, created = _publish(store, conn, name, files, fmt, manifest_info, run_id, base_model, info)
        if report is not None and not report.safe and created:
            store.audit(conn, "model.register.unsafe", model.node, report.to_json())
        return model, created


class UnsafeModelError(InputError):
    """A model's files hold a pickle that imports or calls, an executable, or a malformed header."""


def scan_model(store: Store, ref: str) -> tuple[ModelVersion, ScanReport]:
    """Scan a registered model version's files (copied from the blob store to a temporary folder)."""
    model = get_model(store, ref, with_files=True)
    with tempfile.TemporaryDirectory(prefix="keel-scan-") as tmp:
        local = []
        for i, f in enumerate(model.files):
            dest = Path(tmp) / str(i) / PurePosixPath(f.path).name
            local.append((f.path, store.blobs.get_file(f.digest, dest)))
        return model, scan_files(local)


def _publish(
    store: Store,
    conn: Connection,
    name: str,
    files: list[ManifestFile],
    fmt: str,
    manifest_info: BlobInfo,
    run_id: str | None,
    base_model: str | None,
    info: ModelInfo | None,
) -> tuple[ModelVersion, bool]:
    lock_name(conn, models, name, store.clock())
    latest = conn.execute(
        select(model_versions).where(model_versions.c.name == name).order_by(model_versions.c.version.desc()).limit(1)
    ).first()
    if latest is not None and latest.manifest_digest == manifest_info.digest and latest.run_id == run_id:
        return _load(store, conn, name, int(latest.version)), False
    version = (int(latest.version) if latest else 0) + 1
    record = {
        "name": name,
        "version": version,
        "manifest_digest": manifest_info.digest,
        "format": fmt,
        "size": sum(f.size for f in files),
        "file_count": len(files),
        "run_id": run_id,
        "base_model": base_model,
        "info": canonical_json((info or ModelInfo()).to_json()),
        "created_by": store.actor,
        "created_at": store.clock(),
    }
    conn.execute(model_versions.insert().values(**record))
    node = add_node(conn, f"model-version:{name}@v{version}", at=store.clock())
    _link(store, conn, node, run_id, base_model)
    store.audit(conn, "model.register", node, {"manifest": manifest_info.digest, "format": fmt, "run": run_id})
    return _load(store, conn, name, version), True


def _entry(f: ManifestFile) -> dict[str, Any]:
    return {"path": f.path, "digest": f.digest, "size": f.size}


def _link(store: Store, conn: Connection, node: str, run_id: str | None, base_model: str | None) -> None:
    if run_id is not None:
        add_edge(conn, f"run:{run_id}", node, "produced", at=store.clock())
    if base_model is None or "/" in base_model:  # hub ids and paths are recorded, not linked
        return
    try:
        ref = parse_ref(base_model)
        base_version = resolve_version(conn, "model", ref)
    except (InputError, NotFoundError):
        return
    add_edge(conn, f"model-version:{ref.name}@v{base_version}", node, "base_model_of", at=store.clock())


def _load(store: Store, conn: Connection, name: str, version: int, *, with_files: bool = False) -> ModelVersion:
    row = conn.execute(
        select(model_versions).where(model_versions.c.name == name, model_versions.c.version == version)
    ).one()
    pointing = sorted(alias for alias, v in aliases_of(conn, "model", name).items() if v == version)
    files: list[ManifestFile] = []
    if with_files:
        manifest = json.loads(read_bytes(store.blobs, row.manifest_digest))
        files = [ManifestFile(f["path"], f["digest"], int(f["size"])) for f in manifest["files"]]
    return ModelVersion(
        name=row.name,
        version=int(row.version),
        manifest_digest=row.manifest_digest,
        format=row.format,
        size=int(row.size),
        file_count=int(row.file_count),
        run_id=row.run_id,
        base_model=row.base_model,
        info=json.loads(row.info),
        created_by=row.created_by,
        created_at=row.created_at,
        aliases=pointing,
        files=files,
        erased_data=[
            m.to_json()
            for m in marks_for(conn, [f"model-version:{name}@v{version}"]).get(f"model-version:{name}@v{version}", [])
        ],
    )


def get_model(store: Store, ref: str | Ref, *, with_files: bool = True) -> ModelVersion:
    """The model version a reference (`NAME`, `NAME@vN`, `NAME@production`) points at."""
    parsed = parse_ref(ref) if isinstance(ref, str) else ref
    with store.db.read() as conn:
        version = resolve_version(conn, "model", parsed)
        return _load(store, conn, parsed.name, version, with_files=with_files)


def list_models(store: Store) -> list[dict[str, Any]]:
    """Every model: name, latest version, its aliases, and when it was last registered."""
    with store.db.read() as conn:
        rows = conn.execute(
            select(
                model_versions.c.name, model_versions.c.version, model_versions.c.format, model_versions.c.created_at
            ).order_by(model_versions.c.name, model_versions.c.version.desc())
        ).all()
        result: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row.name not in result:
                result[row.name] = {
                    "name": row.name,
                    "latest": int(row.version),
                    "format": row.format,
                    "updated_at": format_time(row.created_at),
                    "aliases": {a: f"v{v}" for a, v in sorted(aliases_of(conn, "model", row.name).items())},
                }
        return list(result.values())


def pull_model(store: Store, ref: str, dest: str | os.PathLike[str], *, force: bool = False) -> ModelVersion:
    """Restore a model version's files into `dest`, each verified against its digest.

    Raises:
        InputError: `dest` is a non-empty directory and `force` is not set.
        BlobCorruptedError: A stored file no longer matches its digest (nothing corrupt is written).
    """
    model = get_model(store, ref)
    target = Path(dest)
    if target.exists() and not target.is_dir():
        raise InputError(f"expected a directory to pull {model.ref} into; {target} is a file")
    if target.exists() and any(target.iterdir()) and not force:
        raise InputError(
            f"expected an empty or new directory to pull {model.ref} into; {target} is not empty",
            hint="choose another directory or pass --force to overwrite files in it",
        )
    root = target.resolve()
    for f in model.files:
        rel = _safe_relative(f.path)
        _refuse_links_and_folders(target, rel)
        out = (root / rel).resolve()
        if root not in out.parents:
            raise IntegrityError(f"manifest of {model.ref} names a path outside the model: {f.path!r}")
        try:
            store.blobs.get_file(f.digest, out)
        except OSError as exc:
            raise InputError(
                f"cannot write {target / rel}: {exc.strerror}", hint="choose a place you may write"
            ) from None
    return model


def _refuse_links_and_folders(target: Path, rel: str) -> None:
    """`--force` overwrites files; it never writes through a symbolic link or over a folder."""
    current = target
    for part in PurePosixPath(rel).parts:
        current = current / part
        if current.is_symlink():
            raise InputError(
                f"{current} is a symbolic link (to {os.readlink(current)}); pull does not write through links",
                hint="remove the link, or pull into an empty directory",
            )
    if current.is_dir():
        raise InputError(
            f"expected to write the model file {rel} at {current}; a directory is there",
            hint="remove or rename that directory, or pull into an empty directory",
        )


def alias_model(
    store: Store, name: str, alias: str, version: int | str | None, *, reason: str, evidence: str | None = None
) -> AliasEvent:
    """Point `alias` of model `name` at `version` (`3`, `"v3"`, `"latest"`, another alias; None removes it)."""
    return set_alias(store, "model", name, alias, version, reason=reason, evidence=evidence)


def rollback_model(store: Store, name: str, alias: str, *, reason: str, evidence: str | None = None) -> AliasEvent:
    """Undo the last move of `alias`: point it back where it was before."""
    return roll_back_alias(store, "model", name, alias, reason=reason, evidence=evidence)


def model_history(store: Store, name: str, alias: str | None = None) -> list[AliasEvent]:
    """Every alias move of model `name`, oldest first."""
    return alias_history(store, "model", name, alias)
