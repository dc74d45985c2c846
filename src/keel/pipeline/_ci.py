"""CI for a pipeline: `keel ci init github|gitlab` workflows, and the Markdown summary a CI job posts.

On a pull (merge) request the workflow runs the pipeline's evaluation and gate stages (with what they need)
and posts the summary, the gate's report included, as the job summary; on the main branch it runs the deploy
stages. The cache lives in the workspace's database and blob store, so CI skips unchanged stages only when
`keel.yaml` points at a shared store (PostgreSQL and S3); with the default embedded store every CI run starts
cold. This module writes text; it never calls GitHub or GitLab.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Literal

from keel.core.errors import InputError
from keel.pipeline._engine import StageOutcome
from keel.pipeline._ops import GATES
from keel.pipeline._spec import Pipeline

__all__ = ["CI_FILES", "ci_stages", "ci_workflow", "summary_markdown"]

CiKind = Literal["github", "gitlab"]
CI_FILES: dict[str, str] = {"github": ".github/workflows/keel-pipeline.yml", "gitlab": ".gitlab-ci.yml"}
_DEPLOY_OPS = ("deploy.create", "deploy.canary", "deploy.promote", "model.alias")


def ci_stages(pipeline: Pipeline) -> tuple[list[str], list[str]]:
    """(evaluation and gate stages, deploy stages) of a pipeline, in DAG order."""
    checks = [s.name for s in pipeline.stages.values() if s.gate or s.op in (*GATES, "eval.run")]
    deploys = [s.name for s in pipeline.stages.values() if s.op in _DEPLOY_OPS]
    return checks, deploys


def _command(pipeline_file: str, stages: list[str], summary: str) -> str:
    args = " ".join(shlex.quote(s) for s in stages)
    return f"keel pipeline run {args} --file {shlex.quote(pipeline_file)} --summary {summary}".replace("  ", " ")


def ci_workflow(kind: str, pipeline: Pipeline, root: Path) -> tuple[str, str]:
    """The CI file for `kind` (`github` or `gitlab`): its path relative to `root`, and its text.

    Raises:
        InputError: `kind` is neither, or the pipeline has no stage to run on a pull request.
    """
    if kind not in CI_FILES:
        raise InputError(f"expected `keel ci init github` or `keel ci init gitlab`; got {kind!r}")
    checks, deploys = ci_stages(pipeline)
    if not checks:
        raise InputError(
            f"expected pipeline {pipeline.name!r} to have an evaluation or gate stage to run on pull requests "
            "(op eval.run, eval.gate, data.validate, or `gate: true`); it has none",
            hint="add a gate stage, then run `keel ci init` again",
        )
    file = Path(os.path.relpath(pipeline.path, root.resolve())).as_posix()
    if kind == "github":
        return CI_FILES[kind], _github(file, checks, deploys)
    return CI_FILES[kind], _gitlab(file, checks, deploys)


def _github(file: str, checks: list[str], deploys: list[str]) -> str:
    deploy_job = ""
    if deploys:
        deploy_job = f"""
  deploy:
    # On the main branch: the deploy stages, and whatever they need that changed (cached stages are skipped).
    if: github.event_name == 'push' && github.ref == 'refs/heads/main'
    runs-on: ubuntu-latest
    concurrency: keel-pipeline-deploy
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install Keel
        run: python -m pip install --extra-index-url https://download.pytorch.org/whl/cpu "$KEEL_PACKAGE"
      - name: Workspace
        run: test -f keel.yaml || keel init .
      - name: Deploy stages
        run: {_command(file, deploys, '"$GITHUB_STEP_SUMMARY"')}
"""
    return f"""# Written by `keel ci init github`. Runs the Keel pipeline in {file}.
# The stage cache lives in the workspace's store: point keel.yaml at a shared database and blob store
# (PostgreSQL, S3) so unchanged stages are skipped here as they are on your machine.
name: keel-pipeline
on:
  pull_request:
  push:
    branches: [main]
permissions:
  contents: read
env:
  KEEL_PACKAGE: keel-llmops[all]
jobs:
  evaluate:
    # On pull requests: the evaluation and gate stages (and the stages they need); the gate's report is the
    # job summary, and a failed gate fails the job.
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install Keel
        run: python -m pip install --extra-index-url https://download.pytorch.org/whl/cpu "$KEEL_PACKAGE"
      - name: Workspace
        run: test -f keel.yaml || keel init .
      - name: Evaluate and gate
        run: {_command(file, checks, '"$GITHUB_STEP_SUMMARY"')}
{deploy_job}"""


def _gitlab(file: str, checks: list[str], deploys: list[str]) -> str:
    deploy_job = ""
    if deploys:
        deploy_job = f"""
deploy:
  stage: deploy
  rules:
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
  resource_group: keel-pipeline-deploy
  script:
    - {_command(file, deploys, "keel-summary.md")}
  artifacts:
    when: always
    expose_as: keel deploy summary
    paths: [keel-summary.md]
"""
    return f"""# Written by `keel ci init gitlab`. Runs the Keel pipeline in {file}.
# The stage cache lives in the workspace's store: point keel.yaml at a shared database and blob store
# (PostgreSQL, S3) so unchanged stages are skipped here as they are on your machine.
stages: [evaluate, deploy]
variables:
  KEEL_PACKAGE: keel-llmops[all]
default:
  image: python:3.11
  before_script:
    - python -m pip install --extra-index-url https://download.pytorch.org/whl/cpu "$KEEL_PACKAGE"
    - test -f keel.yaml || keel init .
evaluate:
  stage: evaluate
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
  script:
    - {_command(file, checks, "keel-summary.md")}
  artifacts:
    when: always
    expose_as: keel gate report
    paths: [keel-summary.md]
{deploy_job}"""


def summary_markdown(pipeline: Pipeline, run_id: str | None, outcomes: list[StageOutcome], evidence: str | None) -> str:
    """The run as Markdown: a table of stages (ran, cached, failed) and a failed gate's evidence."""
    lines = [f"# Keel pipeline `{pipeline.name}`" + (f" — run `{run_id}`" if run_id else ""), ""]
    lines += ["| stage | status | what | seconds |", "|---|---|---|---|"]
    for o in outcomes:
        what = o.summary.splitlines()[0] if o.summary and o.status != "failed" else (o.reasons or [""])[0]
        lines.append(f"| {o.stage} | {o.status} | {what.replace('|', '/')} | {o.seconds:.1f} |")
    if evidence:
        lines += ["", evidence]
    return "\n".join(lines) + "\n"
