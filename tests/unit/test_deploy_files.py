"""The container files: Dockerfile (hadolint), compose.yaml (the Compose spec's JSON schema) and the
Kubernetes manifests (the Kubernetes API's schemas, strict), plus what Keel needs of them.

They cannot be run here (no Docker daemon on the build machines), so these checks are what CI has.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        message = f"{name} is not installed: pip install -e '.[dev]'"
        if os.environ.get("KEEL_REQUIRE_ALL_TIERS"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_dockerfile_passes_hadolint_and_is_multi_stage_and_non_root() -> None:
    _run(_tool("hadolint"), "--failure-threshold", "info", "Dockerfile")
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    runtime = text[text.rindex("\nFROM ") :]
    user = re.findall(r"^USER (\S+)", runtime, re.M)
    assert user and not user[-1].startswith(("root", "0"))
    assert "requirements/torch.txt" in text and "requirements/lock.txt" in text
    assert (ROOT / "deploy" / "docker" / "entrypoint.sh").read_text().startswith("#!/bin/sh")


def test_compose_file_matches_the_compose_spec_and_wires_the_services() -> None:
    _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml")
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"keel", "postgres", "redis", "minio"} <= set(services)
    env = services["keel"]["environment"]
    assert env["KEEL_DATABASE_URL"].startswith("postgresql://") and "@postgres:" in env["KEEL_DATABASE_URL"]
    assert env["KEEL_REDIS_URL"].startswith("redis://redis:")
    assert env["KEEL_BLOB_URL"].startswith("s3://") and "http://minio:9000" in env["KEEL_BLOB_OPTIONS"]
    assert "/readyz" in " ".join(services["keel"]["healthcheck"]["test"])
    assert set(env) <= _SETTINGS, f"not Keel settings: {sorted(set(env) - _SETTINGS)}"


def test_kubernetes_manifests_validate_and_probe_health_and_readiness() -> None:
    assert MANIFESTS
    _run(_tool("kubernetes-validate"), "--strict", "--quiet", *map(str, MANIFESTS))
    documents = [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
    config = {d["kind"]: d for d in documents if d["metadata"]["name"] in sources}
    keys = set(config["ConfigMap"]["data"]) | set(config["Secret"]["stringData"])
    assert {"KEEL_DATABASE_URL", "KEEL_REDIS_URL", "KEEL_BLOB_URL", "KEEL_AUDIT_KEY", "KEEL_GOVERN_KEY"} <= keys
    assert keys <= _SETTINGS, f"not Keel settings: {sorted(keys - _SETTINGS)}"


def _settings() -> set[str]:
    from keel.core.settings import Settings
    from keel.serve import ServeSettings

    return {f"KEEL_{name.upper()}" for name in (*Settings.model_fields, *ServeSettings.model_fields)}


_SETTINGS = _settings()
