"""Pin each package's public surface: a change here is a deliberate API change."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "keel": [
        "KeelError", "Settings", "Store", "alias_model", "create_prompt", "get_model", "get_prompt",
        "init_workspace", "list_runs", "load_settings", "open_store", "register_model", "render_prompt", "start_run",
    ],
    "keel.core": [
        "BlobCorruptedError", "BlobNotFoundError", "Clock", "ConfigError", "ConflictError", "DatabaseUnavailableError",
        "InputError", "IntegrityError", "KeelError", "NotFoundError", "SchemaError", "Settings", "StoreError",
        "WorkspaceNotFoundError", "canonical_json", "find_workspace", "format_time", "is_sha256", "load_settings",
        "new_ulid", "require_sha256", "sha256_hex", "system_clock",
    ],
    "keel.store": [
        "AuditEvent", "AuditKey", "BlobInfo", "BlobStore", "Checkpoint", "Database", "Direction", "DoctorReport",
        "Edge", "Finding", "FsspecBlobStore", "GcReport", "LineageHit", "LineagePath", "LocalBlobStore", "Store",
        "VerifyReport", "add_edge", "add_edges", "add_node", "checkpoint", "collect_garbage", "doctor", "events",
        "init_workspace", "insert_for", "keel_version", "load_audit_key", "mappable_path", "mask_url", "node_id",
        "open_blob_store", "open_store", "parse_duration", "parse_node_id", "path_between", "put_bytes", "read_bytes",
        "record", "redact_details", "referenced_blobs", "seal_legacy", "verify", "verify_blob", "walk",
    ],
    "keel.registry": [
        "AliasEvent", "ManifestFile", "ModelInfo", "ModelVersion", "PromptSummary", "PromptVersion", "Ref",
        "RenderedPrompt", "Run", "RunInfo", "RunStatus", "alias_model", "alias_prompt", "capture_environment",
        "close_run", "count_runs", "create_prompt", "detect_format", "get_model", "get_prompt", "get_run",
        "list_models", "list_prompts", "list_runs", "load_prompt_file", "metric_series", "model_card",
        "model_history", "parse_ref", "prompt_history", "pull_model", "register_model", "render_card_markdown",
        "render_prompt", "rollback_model", "rollback_prompt", "start_run",
    ],
    "keel.evals": [
        "AXES", "BiasReport", "CONTROL", "CaseScore", "ClaimModel", "ClassificationReport", "ConfidenceInterval",
        "EvalCase", "EvalResult", "EvalSuite", "GateReport", "GroupGap", "JudgeCalibration", "JudgeModelError",
        "JudgeParseError", "JudgeScore", "LLMJudge", "LLMJudgeOptions", "LocalChatClient", "MetricAggregate",
        "MetricComparison", "OfflineJudge", "OfflineJudgeOptions", "PROBE_SCORES", "PairedTest", "ProbeOptions",
        "ProbeRun", "aggregate", "bias_probe", "bleu", "blind_spots", "bootstrap_ci", "calibrate_judge",
        "cases_from_rows", "chrf", "classification_report", "cohen_kappa", "compare_results", "corpus_bleu",
        "corpus_chrf", "counterfactuals", "embed", "embedding_similarity", "exact_match", "export_for_annotation",
        "gate", "get_result", "holm_adjust", "is_refusal", "judge_agreement", "list_results", "load_cases",
        "load_suite", "make_judge", "minimum_detectable_effect", "normalize_text", "paired_bootstrap",
        "paired_permutation", "parse_judgement", "parse_suite", "perplexity", "read_ratings", "rouge", "run_probes",
        "run_suite", "score_outputs", "sign_flip_p_values", "split_claims", "subject_for_ref", "toxicity",
    ],
    "keel.serve": [
        "Backend", "BadRequestError", "CircuitBreaker", "CircuitOpenError", "Deployment", "DeploymentEvent",
        "DeploymentSettings", "EvalSample", "Gateway", "GatewayError", "GatewayMetrics", "Guardrails",
        "InjectionDetector", "InjectionVerdict", "LlamaCppBackend", "LlmGuardScanner", "MemoryRateLimiter",
        "MemoryResponseCache",
        "ModelNotFoundError", "OnlineEvaluator", "OpenAIBackend", "Operation", "RateLimitedError", "RedisRateLimiter",
        "RedisResponseCache", "Route", "SentenceTransformersBackend", "ServeSettings", "TraceNotFoundError",
        "TransformersBackend", "UpstreamError", "canary_deployment", "choose_route", "configure_deployment",
        "create_app", "create_deployment", "deployment_history", "get_deployment", "list_deployments",
        "load_serve_settings", "looks_like_injection", "promote_deployment", "rollback_deployment", "serve_in_thread",
        "stub_upstream_app",
    ],
    "keel.monitor": [
        "AlertConfig", "AlertEvaluatorLease", "AlertEvent", "AlertRule", "BatchWriter", "CostReport", "DriftOptions",
        "DriftReport", "ExportForm", "FeatureDrift", "Feedback", "FeedbackExport", "FeedbackWriter", "Guard",
        "GuardResult", "Observation", "OtlpExporter", "PriceTable", "Rollout", "RolloutDecision", "SOURCES",
        "SummaryRow", "Tick", "Trace", "TraceContent", "TraceRetrieval", "TraceWriter", "alert_tick", "check_guard",
        "compare_observations", "cost_report", "dataset_observations", "detect_drift", "evaluate_alerts",
        "export_feedback", "feedback_scores", "get_rollout", "get_trace", "get_trace_contents", "list_alerts",
        "list_feedback", "list_traces", "load_alert_config", "load_prices", "make_feedback", "mmd_test",
        "monitor_tick", "parse_duration", "parse_guard", "parse_score", "parse_since", "percentile",
        "prometheus_rules", "record_feedback", "start_rollout", "step_rollouts", "storable", "summarize",
        "trace_observations", "traces_citing", "watch",
    ],
    "keel.govern": [
        "ACTIONS", "ApiKey", "ApprovalRequest", "ApprovalRequiredError", "AuthenticationError",
        "AuthenticationThrottledError", "BUILTIN_ROLES", "Binding", "CLASSIFICATIONS", "CreatedKey", "Decision",
        "Identity", "KeyVerifier", "PermissionDeniedError", "PiiDetector", "PiiSpan", "PiiType", "RedactMode",
        "access_enabled", "approve", "authenticate_key", "check", "classify_dataset", "create_key",
        "current_principal", "dataset_classification", "define_role", "get_request", "grant", "list_bindings",
        "list_keys", "list_requests", "list_roles", "protect", "redact", "reject", "require", "require_read",
        "revoke", "revoke_key", "whoami",
    ],
    "keel.index": [
        "BuildProgress", "ChunkSettings", "DEFAULT_MODEL", "Embedder", "EvalQuery", "HNSW_THRESHOLD", "Hit",
        "IndexBuild", "IndexVersion", "RetrievalEval", "Retriever", "SearchMode", "SentenceTransformerEmbedder",
        "Span", "VectorParams", "build_index", "build_vectors", "chunk_records", "chunk_text", "ef_search_for",
        "evaluate_index", "get_index", "list_indexes", "load_embedder", "load_queries", "normalise", "open_index",
        "parse_filters", "parse_index_ref", "retrieval_metrics", "search", "vector_search",
        "FILLABLE", "RagAnswer", "RagApp", "RetrievalSettings", "RetrieverPool", "check_app", "query_of",
        "OnnxQueryEncoder", "QueryEncoderUnavailableError", "QueryRuntime", "load_query_encoder",
    ],
    "keel.train": [
        "DataConfig", "DistillOptions", "DpoConfig", "HyperParameters", "LoraSettings", "OptimizeResult",
        "OutputConfig", "QualityLossError", "SearchDimension", "SweepConfig", "SweepResult", "TinyModelOptions",
        "TrainConfig", "TrainResult", "Trial", "bundled_gguf", "distill_model", "export_gguf", "find_resumable_run",
        "import_gguf", "load_model", "load_train_config", "new_tiny_model", "parse_train_config", "prune_model",
        "quantize_model", "sweep", "train",
    ],
    "keel.cli": ["app", "main"],
    "keel.pipeline": [
        "DemoReport", "ErasureImpact", "GateFailedError", "Pipeline", "PipelineBusyError", "PlannedStage", "Stage",
        "StageFailedError", "StageOutcome", "erase_subjects", "erasure_impact", "last_statuses", "load_pipeline",
        "parse_pipeline", "plan_pipeline", "run_demo", "run_pipeline",
    ],
    "keel.ui": ["create_console", "mount_console"],
    "keel.data": [
        "MAX_JSON_DEPTH", "RECORD_SCHEMA", "DatasetVersion", "Expectations", "IdRepeats", "RecordTrace", "ShardEntry",
        "ValidationReport",
        "VersionDiff", "commit_version", "diff_versions", "export_version", "get_version", "iter_batches",
        "list_datasets", "list_versions", "load_expectations", "load_version", "make_record", "record_id",
        "records_to_table", "repeated_ids", "row_hashes", "split_assignments", "split_version", "tag_version",
        "to_hf_dataset", "trace_record", "validate_version",
    ],
    "keel.curate": [
        "CurationReport", "CurationResult", "DropExplanation", "GlobalStep", "LanguageDetector", "LocalEngine",
        "MinHashParams", "NearDuplicateIndex", "Problem", "ProblemReason", "Progress", "QualityThresholds",
        "RayEngine", "Recipe", "Step", "StepParams", "StepResult", "StepStats", "SynthesisReport",
        "SynthesizeOptions", "available_steps", "build_steps", "curate", "detect_format", "explain_record",
        "load_recipe", "minhash_signatures", "parse_generation", "parse_recipe", "quality_signals", "read_file",
        "source_node", "synthesize",
    ],
    "keel.curate.ray": ["RayEngine"],
    "keel.label": [
        "FORMATS", "KINDS", "ORDERS", "AgreementReport", "ImportReport", "Item", "Label", "LabelCommit", "LabelSchema",
        "Progress", "Queue", "agreement", "commit_labels", "create_queue", "export_labels", "fleiss_kappa", "get_item",
        "get_queue", "get_schema", "import_labels", "krippendorff_alpha", "label_studio_config", "list_labels",
        "list_queues", "list_schemas", "next_item", "position_of", "present_items", "queue_progress", "record_label",
        "set_schema", "skip_item", "undo_last",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_public_names(module: str) -> None:
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(EXPECTED[module])
    for name in imported.__all__:
        assert hasattr(imported, name), f"{module}.__all__ lists {name}, which it does not define"


@pytest.mark.parametrize(
    ("old", "new"),
    [("keel.data", "keel.curate"), ("keel.data", "keel.govern"), ("keel.pipeline", "keel.curate")],
)
def test_moved_names_resolve_with_a_deprecation_warning(old: str, new: str) -> None:
    """Names that left keel.data / keel.pipeline in the keel/curate split keep their old path for one release."""
    moved = [name for name in importlib.import_module(new).__all__ if name in importlib.import_module(old)._MOVED]
    assert moved, f"no names of {new} are re-exported from {old}"
    for name in moved:
        with pytest.warns(DeprecationWarning, match=f"{old}.{name} moved to {new}.{name}"):
            assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)


def test_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        importlib.import_module("keel.data").nope  # noqa: B018
