"""Every table of Keel's metadata database, in one SQLAlchemy `MetaData`.

Domain modules own the functions that read and write these tables; this module only says
what the tables are. A change here needs a migration in `store/migrations/versions/`, and
`tests/unit/store/test_migrations.py` fails until the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

__all__ = [
    "NODE_ID_LENGTH",
    "OPEN_ALERT",
    "UTCDateTime",
    "access_bindings",
    "access_protections",
    "access_roles",
    "alerts",
    "alias_events",
    "aliases",
    "api_keys",
    "approval_requests",
    "audit_events",
    "audit_head",
    "blobs",
    "data_keys",
    "dataset_classifications",
    "dataset_records",
    "dataset_shards",
    "dataset_version_shards",
    "dataset_versions",
    "datasets",
    "deployment_events",
    "deployments",
    "eval_case_scores",
    "erasure_marks",
    "erasures",
    "eval_results",
    "feedback",
    "index_versions",
    "indexes",
    "label_items",
    "label_queues",
    "label_schemas",
    "labels",
    "lineage_edges",
    "lineage_nodes",
    "metadata",
    "model_versions",
    "models",
    "prompt_versions",
    "postgresql_options",
    "prompts",
    "rollouts",
    "run_artifacts",
    "run_latest_metrics",
    "run_metrics",
    "run_params",
    "runs",
    "trace_contents",
    "subject_index",
    "trace_subjects",
    "traces",
]

NODE_ID_LENGTH = 255

# Constraint names are deterministic so migrations can address them on both backends.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no zone, PostgreSQL converts to the session's; both come back as aware UTC here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive times; store UTC (naive on SQLite, which has no zones)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise TypeError(f"expected a timezone-aware datetime for a UTCDateTime column; got naive {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime whatever the backend gave."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def copy(self, **kw: Any) -> UTCDateTime:
        """A fresh instance (the type holds no state)."""
        return UTCDateTime()


blobs = Table(
    "blobs",
    metadata,
    Column("digest", String(64), primary_key=True, comment="sha256 of the bytes, lowercase hex"),
    Column("size", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    comment="Blobs this workspace has stored; the bytes live in the blob store under the digest.",
)

lineage_nodes = Table(
    "lineage_nodes",
    metadata,
    Column("id", String(NODE_ID_LENGTH), primary_key=True, comment="'<kind>:<identity>'"),
    Column("kind", String(64), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    comment="Every object in the lineage graph; rows are created with the first edge that names them.",
)

lineage_edges = Table(
    "lineage_edges",
    metadata,
    # Data flows from upstream to downstream: a dataset version is upstream of the model trained on it.
    Column("upstream", String(NODE_ID_LENGTH), ForeignKey("lineage_nodes.id"), primary_key=True),
    Column("downstream", String(NODE_ID_LENGTH), ForeignKey("lineage_nodes.id"), primary_key=True),
    Column("kind", String(64), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    # The primary key serves downstream walks (by upstream); this index serves upstream walks.
    Index(None, "downstream", "upstream"),
    comment="Directed edges of the lineage graph, each with a kind such as trained_on or derived_from.",
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(255), nullable=False, comment="principal id, never a person's name or email"),
    Column("action", String(128), nullable=False, index=True),
    Column("object_id", String(NODE_ID_LENGTH), nullable=False, index=True),
    Column("details", Text, nullable=True, comment="canonical JSON; NULL once redacted"),
    Column("details_sha256", String(64), nullable=False, comment="hashed into the chain instead of details"),
    Column("redacted_at", UTCDateTime, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("on_behalf_of", String(255), nullable=True, comment="KEEL_ACTOR's note: whom the actor says it acts for"),
    Column("mac", String(64), nullable=True, comment="HMAC-SHA256 of `hash` under the audit key kept outside the DB"),
    Column("key_id", String(16), nullable=True, comment="which audit key made `mac` (sha256 of its public key)"),
    comment="Append-only, hash-chained record of every mutating operation.",
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False, comment="always 1"),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    comment="The chain's last sequence number and hash: the row appenders lock, and the check for a cut tail.",
)

# ---------------------------------------------------------------------------------------------
# Registry (keel.registry): runs, models, prompts, and the aliases that point at their versions.

runs = Table(
    "runs",
    metadata,
    Column("id", String(26), primary_key=True, comment="ULID"),
    Column("kind", String(64), nullable=False, index=True, comment="curate, train, eval, index, …"),
    Column("name", String(255), nullable=True),
    Column("status", String(16), nullable=False, index=True, comment="running, finished, failed, killed"),
    Column("params", Text, nullable=False, comment="canonical JSON of the run's parameters"),
    Column("env", Text, nullable=False, comment="canonical JSON of the captured environment"),
    Column("error", Text, nullable=True),
    Column("created_by", String(255), nullable=False),
    Column("started_at", UTCDateTime, nullable=False, index=True),
    Column("ended_at", UTCDateTime, nullable=True),
    # The console's runs page: a kind and status filter read newest first from the index, no sort (0013).
    Index(None, "kind", "status", "id"),
    comment="One execution of a job: its parameters, environment, status and timing.",
)

run_params = Table(
    "run_params",
    metadata,
    Column("run_id", String(26), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False, comment="the value as canonical JSON text, for equality filters"),
    # Filter runs by a parameter value without reading every run's params JSON.
    Index(None, "key", "value", "run_id"),
    comment="Top-level parameters of each run, one row each, for filtering.",
)

run_metrics = Table(
    "run_metrics",
    metadata,
    Column("run_id", String(26), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("value", Float, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    comment="Every logged metric value, as a series per run and key.",
)

run_latest_metrics = Table(
    "run_latest_metrics",
    metadata,
    Column("run_id", String(26), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    # Sort runs by a metric's last value without scanning series.
    Index(None, "key", "value", "run_id"),
    comment="The value at the highest step of each run's metric, kept current as metrics are logged.",
)

run_artifacts = Table(
    "run_artifacts",
    metadata,
    Column("run_id", String(26), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("path", String(1024), primary_key=True, comment="relative path inside the run's artifacts"),
    Column("digest", String(64), ForeignKey("blobs.digest"), nullable=False),
    Column("size", BigInteger, nullable=False),
    comment="Files a run produced, stored as blobs.",
)

models = Table(
    "models",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("description", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    comment="A named line of model versions.",
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(128), ForeignKey("models.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("manifest_digest", String(64), ForeignKey("blobs.digest"), nullable=False, index=True),
    Column("format", String(32), nullable=False, comment="hf, peft-adapter, gguf or files"),
    Column("size", BigInteger, nullable=False),
    Column("file_count", Integer, nullable=False),
    Column("run_id", String(26), ForeignKey("runs.id"), nullable=True, index=True),
    Column("base_model", String(512), nullable=True, comment="hub id, path or registry ref it was tuned from"),
    Column("info", Text, nullable=False, comment="canonical JSON: description, intended use, limitations, …"),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    comment="An immutable set of model files (a manifest of blobs) registered as NAME@vN.",
)

prompts = Table(
    "prompts",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    comment="A named line of prompt versions.",
)

prompt_versions = Table(
    "prompt_versions",
    metadata,
    Column("name", String(128), ForeignKey("prompts.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("digest", String(64), nullable=False, index=True, comment="sha256 of the canonical content"),
    Column("template", Text, nullable=False),
    Column("variables", Text, nullable=False, comment="canonical JSON: declared variables"),
    Column("examples", Text, nullable=False, comment="canonical JSON: few-shot examples"),
    Column("description", Text, nullable=True),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    comment="An immutable Jinja2 template with declared variables and few-shot examples, as NAME@vN.",
)

aliases = Table(
    "aliases",
    metadata,
    Column("subject", String(16), primary_key=True, comment="model or prompt"),
    Column("name", String(128), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    comment="Where each alias (production, staging, …) of a model or prompt points now.",
)

alias_events = Table(
    "alias_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject", String(16), nullable=False),
    Column("name", String(128), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True, comment="NULL when the alias was removed"),
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", String(255), nullable=True, comment="e.g. the eval result id that justified it"),
    Column("at", UTCDateTime, nullable=False),
    Index(None, "subject", "name", "id"),
    comment="Append-only history of every alias move: the rollback trail.",
)

# ---------------------------------------------------------------------------------------------
# Datasets (keel.data): immutable, content-addressed versions made of shared Parquet shards.

datasets = Table(
    "datasets",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("description", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    comment="A named line of dataset versions.",
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("name", String(128), ForeignKey("datasets.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("digest", String(64), ForeignKey("blobs.digest"), nullable=False, unique=True, comment="manifest sha256"),
    Column("num_rows", BigInteger, nullable=False),
    Column("num_bytes", BigInteger, nullable=False, comment="bytes of the live shards it reads"),
    Column("new_bytes", BigInteger, nullable=False, comment="bytes this version added to the blob store"),
    Column("message", Text, nullable=True),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    comment="An immutable dataset version (NAME@vN) whose identity is the sha256 of its manifest blob.",
)

dataset_shards = Table(
    "dataset_shards",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest", String(64), ForeignKey("blobs.digest"), nullable=False, unique=True, comment="Parquet blob"),
    Column("keys_digest", String(64), ForeignKey("blobs.digest"), nullable=False, comment="ids and row hashes"),
    Column("num_rows", BigInteger, nullable=False),
    comment="Each Parquet shard any version uses, stored once however many versions share it.",
)

dataset_version_shards = Table(
    "dataset_version_shards",
    metadata,
    Column("digest", String(64), ForeignKey("dataset_versions.digest"), primary_key=True),
    Column("ordinal", Integer, primary_key=True),
    Column("shard_id", Integer, ForeignKey("dataset_shards.id"), nullable=False, index=True),
    Column("deletes_digest", String(64), ForeignKey("blobs.digest"), nullable=True, comment="rows this version skips"),
    Column("live_rows", BigInteger, nullable=False),
    comment="The ordered shards of each version, each with the rows it deletes from that shard.",
)

dataset_records = Table(
    "dataset_records",
    metadata,
    Column("record_id", String(255), primary_key=True),
    Column("shard_id", Integer, ForeignKey("dataset_shards.id"), primary_key=True),
    Column("row", BigInteger, primary_key=True),
    # One B-tree keyed by record id on SQLite (no rowid table beside it): half the insert time at 1M records.
    sqlite_with_rowid=False,
    comment="Where each record id sits in which shard: the index behind `keel data trace`.",
)

# ---------------------------------------------------------------------------------------------
# Retrieval indexes (keel.index): migration 0005.

indexes = Table(
    "indexes",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    comment="A named line of retrieval index versions.",
)

index_versions = Table(
    "index_versions",
    metadata,
    Column("name", String(128), ForeignKey("indexes.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("manifest_digest", String(64), ForeignKey("blobs.digest"), nullable=False, index=True),
    Column("dataset_ref", String(255), nullable=True, comment="NAME@vN of the dataset version it indexes"),
    Column("dataset_digest", String(64), nullable=True, index=True, comment="that dataset version's manifest"),
    Column("embedding_model", String(512), nullable=False, comment="sentence-transformers id or path"),
    Column("chunking", Text, nullable=False, comment="canonical JSON of the chunking settings"),
    Column("kind", String(16), nullable=False, comment="flat (exact) or hnsw (approximate)"),
    Column("num_records", BigInteger, nullable=False),
    Column("num_chunks", BigInteger, nullable=False),
    Column("embedded_chunks", BigInteger, nullable=False, comment="chunks embedded anew; the rest were reused"),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    comment="An immutable retrieval index (NAME@vN): chunks, embeddings, vector and BM25 indexes as blobs.",
)

# ---------------------------------------------------------------------------------------------
# Evaluation (keel.evals): migration 0006.

eval_results = Table(
    "eval_results",
    metadata,
    Column("id", String(26), primary_key=True, comment="ULID; lineage node eval-result:<id>"),
    Column("suite", String(128), nullable=False, index=True),
    Column("suite_digest", String(64), nullable=False, comment="sha256 of the canonical suite, subject excluded"),
    Column("subject", String(512), nullable=False, index=True, comment="what was evaluated, e.g. model-version:x@v2"),
    Column("dataset", String(255), nullable=True, comment="the dataset version of the cases, NAME@vN"),
    Column("seed", Integer, nullable=False),
    Column("num_cases", Integer, nullable=False),
    Column("passed", Integer, nullable=False, comment="1 when every metric met its threshold"),
    Column("config", Text, nullable=False, comment="canonical JSON of the suite and subject as run"),
    Column("aggregates", Text, nullable=False, comment="canonical JSON: metric -> mean, CI, threshold, passed"),
    Column("outputs_digest", String(64), ForeignKey("blobs.digest"), nullable=False, comment="JSON of case outputs"),
    Column("run_id", String(26), ForeignKey("runs.id"), nullable=True, comment="the eval run: environment, seed"),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    comment="One run of an eval suite against one subject, with aggregate scores and their confidence intervals.",
)

eval_case_scores = Table(
    "eval_case_scores",
    metadata,
    Column("result_id", String(26), ForeignKey("eval_results.id", ondelete="CASCADE"), primary_key=True),
    Column("case_index", Integer, primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("case_id", String(255), nullable=False),
    Column("value", Float, nullable=False),
    Column("details", Text, nullable=True, comment="canonical JSON: the judge's evidence for this score"),
    comment="Every per-case score of an eval result, for paired comparisons and drill-down.",
)

# ---------------------------------------------------------------------------------------------
# Serving (keel.serve, keel.monitor): deployments, API keys, traces; migration 0007.

deployments = Table(
    "deployments",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("routes", Text, nullable=False, comment="canonical JSON: the weighted routes requests go to now"),
    Column("settings", Text, nullable=False, comment="canonical JSON: guardrails, cache, fallback route"),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    comment="A named entry point of the gateway and where its requests are routed now.",
)

deployment_events = Table(
    "deployment_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True, comment="also the gateway's reload generation"),
    Column("deployment", String(128), ForeignKey("deployments.name"), nullable=False),
    Column("action", String(32), nullable=False, comment="create, canary, promote, rollback, configure"),
    Column("from_routes", Text, nullable=True, comment="canonical JSON; NULL for create"),
    Column("to_routes", Text, nullable=False, comment="canonical JSON"),
    Column("actor", String(255), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column(
        "evidence", Text, nullable=True, comment="canonical JSON: why a rollout controller decided (migration 0010)"
    ),
    Index(None, "deployment", "id"),
    comment="Append-only history of every route change of every deployment: the rollback trail.",
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(26), primary_key=True, comment="ULID; also the key's visible prefix"),
    Column("name", String(128), nullable=False),
    Column("hash", String(255), nullable=False, comment="argon2id hash of the secret; the secret is never stored"),
    Column("scopes", Text, nullable=False, comment="canonical JSON list of deployment names, or ['*']"),
    Column("rate_per_minute", Float, nullable=True, comment="NULL: unlimited"),
    Column("burst", Integer, nullable=True),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    comment="Gateway API keys: argon2-hashed, shown once, scoped to deployments, rate limited.",
)

traces = Table(
    "traces",
    metadata,
    Column("id", String(26), primary_key=True, comment="ULID"),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("deployment", String(128), nullable=False),
    Column("model_version", String(160), nullable=True, comment="NAME@vN that answered"),
    Column("prompt_version", String(160), nullable=True),
    Column("key_id", String(26), nullable=True),
    Column("operation", String(32), nullable=False, comment="chat, completion or embeddings"),
    Column("status", Integer, nullable=False, comment="HTTP status returned"),
    Column("error", String(64), nullable=True, comment="OpenAI error type when status >= 400"),
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("cost", Float, nullable=False),
    Column("cache_hit", Integer, nullable=False, comment="1 when answered from the response cache"),
    Column("flags", Text, nullable=False, comment="canonical JSON list of guardrail flags"),
    Index(None, "deployment", "at"),
    comment="One served request each: route, versions, tokens, latency, cost, cache and guardrail outcome.",
)

trace_retrievals = Table(
    "trace_retrievals",
    metadata,
    # No foreign key to traces: the trace writer inserts both in one transaction, and the traces
    # table's retention may differ. One row per request to a RAG route.
    Column("trace_id", String(26), primary_key=True, comment="the trace's ULID"),
    Column("index_version", String(160), nullable=True, comment="NAME@vN searched"),
    Column("prompt_version", String(160), nullable=True, comment="NAME@vN rendered"),
    Column("chunks", Text, nullable=False, comment="canonical JSON: chunk_id, record_id, source, score, rank"),
    Column("embed_ms", Float, nullable=False),
    Column("search_ms", Float, nullable=False),
    Column("render_ms", Float, nullable=False),
    Column("generation_ms", Float, nullable=True, comment="the backend's time, apart from retrieval"),
    Column("failed", Integer, nullable=False, comment="1 when retrieval failed (answered 503)"),
    comment="What a RAG route retrieved for one served request: versions, chunks with scores, step times.",
)

# ---------------------------------------------------------------------------------------------
# Access (keel.govern): roles granted on scopes, protected targets, approvals; migration 0009.

# ---------------------------------------------------------------------------------------------
# Data-subject erasure (keel.govern, keel.data, keel.monitor): migration 0011.

subject_index = Table(
    "subject_index",
    metadata,
    Column("subject", String(64), primary_key=True, comment="HMAC-SHA256 of 'type:value' under the workspace key"),
    Column("shard_id", Integer, ForeignKey("dataset_shards.id"), primary_key=True),
    Column("row", BigInteger, primary_key=True),
    sqlite_with_rowid=False,
    comment="Where each detected personal value sits, by keyed hash (never the value): found after redaction.",
)

trace_subjects = Table(
    "trace_subjects",
    metadata,
    Column("subject", String(64), primary_key=True, comment="HMAC-SHA256 of 'type:value' under the workspace key"),
    Column("trace_id", String(26), primary_key=True),
    sqlite_with_rowid=False,
    comment="Which traces carried which personal value, by keyed hash, for erasure.",
)

erasures = Table(
    "erasures",
    metadata,
    Column("id", String(26), primary_key=True, comment="ULID; lineage and audit object erasure:<id>"),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("certificate", Text, nullable=False, comment="canonical JSON of the signed certificate"),
    Column("certificate_sha256", String(64), nullable=False),
    Column("signature", String(128), nullable=False, comment="Ed25519 signature of the certificate, hex"),
    comment="Every data-subject erasure carried out, with its signed certificate.",
)

erasure_marks = Table(
    "erasure_marks",
    metadata,
    Column("node", String(NODE_ID_LENGTH), primary_key=True, comment="lineage node id of the marked object"),
    Column("erasure_id", String(26), ForeignKey("erasures.id"), primary_key=True),
    Column("mark", String(64), nullable=False, comment="erased, trained_on_erased_data or serves_erased_data"),
    Column("replaced_by", String(NODE_ID_LENGTH), nullable=True, comment="the version written without the records"),
    comment="Objects an erasure removed or tainted: shown by `model show`, cards and `deploy list`.",
)

# ---------------------------------------------------------------------------------------------
# Encryption at rest (keel.store sealed blobs, keel.data classification): migration 0011.

dataset_classifications = Table(
    "dataset_classifications",
    metadata,
    Column("name", String(128), primary_key=True, comment="dataset name (may precede its first version)"),
    Column("classification", String(16), nullable=False, comment="public, internal, confidential or restricted"),
    Column("updated_by", String(255), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    comment="Each dataset's classification; versions of restricted datasets are committed encrypted.",
)

access_roles = Table(
    "access_roles",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("actions", Text, nullable=False, comment='canonical JSON list of action globs, e.g. ["dataset.*"]'),
    Column("description", Text, nullable=True),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    comment="Custom roles; viewer, editor, approver and admin are built in and not stored.",
)

access_bindings = Table(
    "access_bindings",
    metadata,
    Column("principal", String(255), primary_key=True, comment="local:<user>, key:<id> or user:<name>"),
    Column("role", String(64), primary_key=True),
    Column("scope", String(255), primary_key=True, comment="* (the workspace) or KIND:NAME-GLOB"),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    comment="Who holds which role on which scope: the policy loaded into the casbin enforcer.",
)

access_protections = Table(
    "access_protections",
    metadata,
    Column("scope", String(255), primary_key=True, comment="KIND:NAME-GLOB, e.g. model:* or deployment:chat"),
    Column("target", String(64), primary_key=True, comment="alias:<name> or promote"),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    comment="Aliases and deployment promotions that move only with another principal's approval.",
)

approval_requests = Table(
    "approval_requests",
    metadata,
    Column("id", String(26), primary_key=True, comment="ULID"),
    Column(
        "action", String(64), nullable=False, comment="model.alias, prompt.alias, dataset.alias, deployment.promote"
    ),
    Column("object_id", String(NODE_ID_LENGTH), nullable=False),
    Column("change", Text, nullable=False, comment="canonical JSON of exactly what moves, e.g. alias and version"),
    Column("reason", Text, nullable=False),
    Column("evidence", Text, nullable=True, comment="canonical JSON list of supporting ids, e.g. eval results"),
    Column("requested_by", String(255), nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False, comment="pending, approved, rejected or used"),
    Column("decided_by", String(255), nullable=True),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("note", Text, nullable=True, comment="the approver's note"),
    Column("used_at", UTCDateTime, nullable=True),
    Index(None, "object_id", "status"),
    comment="Requests to move a protected target, the approval by another principal, and when it was used.",
)

# ---------------------------------------------------------------------------------------------
# Feedback (keel.monitor): scores on served answers from people and judges, and what was asked
# and answered, for export to training data; migration 0010.

trace_contents = Table(
    "trace_contents",
    metadata,
    # No foreign key: the trace and its content are written in the same batch, and erasure may remove either.
    Column("trace_id", String(26), primary_key=True),
    Column("request", Text, nullable=False, comment="canonical JSON: {'messages': [...]} or {'prompt': ...}"),
    Column("response", Text, nullable=True, comment="the text of the first choice; NULL when none"),
    comment="What a served chat or completion request asked and was answered, when its deployment records it.",
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", String(26), primary_key=True, comment="ULID; lineage node feedback:<id>"),
    # No foreign key: feedback may be written before its trace (both are batched) and outlive its erasure.
    Column("trace_id", String(26), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("deployment", String(128), nullable=True, comment="the trace's deployment"),
    Column("model_version", String(160), nullable=True, comment="the trace's model version (its route)"),
    Column("label", String(64), nullable=False, comment="what is scored: 'rating', 'answer_relevance', …"),
    Column("score", Float, nullable=True, comment="0–1; thumbs up is 1, thumbs down 0"),
    Column("comment", Text, nullable=True),
    Column("correction", Text, nullable=True, comment="a corrected answer"),
    Column("source", String(16), nullable=False, comment="human or judge"),
    Column("actor", String(255), nullable=False, comment="the API key id, user or judge that gave it"),
    Column("details", Text, nullable=True, comment="canonical JSON: a judge's evidence"),
    Index(None, "trace_id"),
    Index(None, "deployment", "at"),
    Index(None, "at"),
    comment="Scores, labels, comments and corrected answers on served answers, from people or judges.",
)

data_keys = Table(
    "data_keys",
    metadata,
    Column("id", String(26), primary_key=True, comment="ULID, written into each blob it encrypts"),
    Column("dataset", String(128), nullable=False, index=True),
    Column("kek_id", String(32), nullable=False, comment="the workspace key-encryption key that wraps it"),
    Column("wrapped", Text, nullable=False, comment="base64 of AES-GCM nonce + wrapped AES-256 data key"),
    Column("created_at", UTCDateTime, nullable=False),
    comment="Per-version data keys of restricted datasets, wrapped by a workspace key kept outside the database.",
)


# Operating (keel.monitor): alerts and guarded rollouts; migration 0012.

# The open incidents of `alerts`, as its partial unique index and the inserts that rely on it spell it.
OPEN_ALERT = "state IN ('pending', 'firing')"

# At most one open incident per rule and label set, whatever number of `keel monitor watch` processes evaluate
# the rules at once (migration 0016). Declared with its SQLite predicate only: a `postgresql_where` argument
# makes SQLAlchemy import its PostgreSQL dialect to check it (~0.03 CPU-s of every command on SQLite);
# `postgresql_options()` adds the same predicate when a PostgreSQL database is opened.
_alerts_open_index = Index("uq_alerts_open_fingerprint", "fingerprint", unique=True, sqlite_where=text(OPEN_ALERT))


def postgresql_options() -> None:
    """Give the declared schema its PostgreSQL-only options (the open-alert index's predicate); idempotent."""
    options = _alerts_open_index.dialect_options["postgresql"]
    if options["where"] is None:
        options["where"] = text(OPEN_ALERT)


alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(128), nullable=False),
    Column("fingerprint", String(64), nullable=False, comment="sha256 of the rule name and its labels"),
    Column("severity", String(32), nullable=False),
    Column("labels", Text, nullable=False, comment="canonical JSON object"),
    Column("state", String(16), nullable=False, comment="pending, firing or resolved"),
    Column("value", Float, nullable=True, comment="the last value the rule's metric had"),
    Column("summary", Text, nullable=False),
    Column("pending_since", UTCDateTime, nullable=False),
    Column("fired_at", UTCDateTime, nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column(
        "notified",
        Integer,
        nullable=False,
        comment="1 once the firing was sent (0: suppressed by cool-down or inhibition)",
    ),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "fingerprint", "id"),
    _alerts_open_index,
    comment="One row per alert incident: pending, firing, then resolved; repeats update the open row.",
)

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(128), ForeignKey("deployments.name"), nullable=False),
    Column("spec", Text, nullable=False, comment="canonical JSON: canary, stable, guards, steps, interval"),
    Column("state", String(16), nullable=False, comment="running, promoted, rolled_back or cancelled"),
    Column("step", Integer, nullable=False, comment="index into the steps: the weight the canary has now"),
    Column("failures", Integer, nullable=False, comment="consecutive checks with a breached but unproven guard"),
    Column("window_start", UTCDateTime, nullable=False, comment="start of the interval being analysed"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column(
        "lease_until",
        UTCDateTime,
        nullable=True,
        comment="a controller is checking it until then; no other may (migration 0016)",
    ),
    Index(None, "deployment", "state"),
    comment="Guarded rollouts: a canary stepped up on passing analyses or rolled back on failing ones.",
)

pipeline_stages = Table(
    "pipeline_stages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", String(128), nullable=False),
    Column("stage", String(128), nullable=False),
    Column("run_id", String(26), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, comment="the stage's run"),
    Column("pipeline_run_id", String(26), ForeignKey("runs.id"), nullable=False, comment="the pipeline's run"),
    Column("cache_key", String(64), nullable=False, comment="sha256 of the op, resolved args and input digests"),
    Column("status", String(16), nullable=False, comment="running, finished, failed or cached"),
    Column("inputs", Text, nullable=False, comment="canonical JSON: each input reference → its content digest"),
    Column("args", Text, nullable=False, comment="canonical JSON of the stage's arguments, params substituted"),
    Column("outputs", Text, nullable=False, comment="canonical JSON: each declared output → the version made"),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    # The cache hit: a finished execution of this stage with this key; and a stage's latest status.
    Index(None, "pipeline", "stage", "cache_key"),
    Index(None, "pipeline", "stage", "id"),
    comment="Each stage of each pipeline run: its cache key, inputs, outputs and status.",
)

pipeline_locks = Table(
    "pipeline_locks",
    metadata,
    Column("pipeline", String(128), primary_key=True),
    Column("run_id", String(26), nullable=False, comment="the pipeline run holding the lock"),
    Column("holder", Text, nullable=False, comment="canonical JSON: host, pid and start of the holding process"),
    Column("acquired_at", UTCDateTime, nullable=False),
    comment="At most one run of each pipeline at a time; a holder whose process died is taken over.",
)


# Labelling (keel.label): label schemas, queues of items to label, and each annotator's labels; migration 0016.

label_schemas = Table(
    "label_schemas",
    metadata,
    Column("name", String(160), primary_key=True, comment="a dataset's name, or traces:DEPLOYMENT"),
    Column("kind", String(16), nullable=False, comment="classes, spans, rating or text"),
    Column("spec", Text, nullable=False, comment="canonical JSON: classes, multi, scale"),
    Column("updated_by", String(255), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    comment="What annotators answer about a dataset's (or a deployment's traces') items.",
)

label_queues = Table(
    "label_queues",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("source", String(255), nullable=False, comment="data:NAME@vN or traces:DEPLOYMENT"),
    Column("spec", Text, nullable=False, comment="canonical JSON: the schema as it was, field, order, annotators"),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    comment="A queue of items to label, in labelling order, drawn from a dataset version or served traces.",
)

label_items = Table(
    "label_items",
    metadata,
    Column("queue", String(128), ForeignKey("label_queues.name", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True, comment="0-based place in the labelling order"),
    # A reference, not the text: the text is read from the version or the trace when shown, so erasure reaches it.
    Column("item_id", String(255), nullable=False, comment="the record id, or the trace id"),
    Index(None, "queue", "item_id"),
    comment="The items of each queue, by position in labelling order; their text stays in the source.",
)

labels = Table(
    "labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("queue", String(128), nullable=False),
    Column("position", Integer, nullable=False),
    Column("annotator", String(255), nullable=False, comment="the principal who answered"),
    Column("status", String(16), nullable=False, comment="labelled or skipped"),
    Column("value", Text, nullable=True, comment="canonical JSON of the answer; NULL when skipped"),
    Column("origin", String(32), nullable=False, comment="terminal, cli, console or import"),
    Column("at", UTCDateTime, nullable=False),
    ForeignKeyConstraint(["queue", "position"], ["label_items.queue", "label_items.position"], ondelete="CASCADE"),
    UniqueConstraint("queue", "position", "annotator"),
    # An annotator's latest answer in a queue (undo, resume).
    Index(None, "queue", "annotator", "id"),
    comment="Each annotator's answer (or skip) on each item of a queue; one per annotator and item.",
)

# The web console (keel.ui): sessions ended by sign-out; migration 0017.

console_signouts = Table(
    "console_signouts",
    metadata,
    Column("session_id", String(32), primary_key=True, comment="the random id the signed session cookie carries"),
    Column("key_id", String(26), nullable=False, comment="the API key the session signed in with"),
    Column("ended_at", UTCDateTime, nullable=False),
    comment="Console sessions signed out before their cookie expired: every console process refuses a copy at "
    "once. Rows older than a session's lifetime are pruned on sign-out.",
)
