"""JSON schemas of every `keel eval … --json` / `--report` document, and a validator that parses first.

Written from the documented output, independently of the code that produces it: booleans must be
JSON booleans (not the strings "True"/"False"), numbers JSON numbers, and no key may be missing.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

NUMBER = {"type": "number"}
P_VALUE = {"type": "number", "minimum": 0, "maximum": 1}
BOOL = {"type": "boolean"}
TEXT = {"type": "string"}
COUNT = {"type": "integer", "minimum": 0}


def _object(properties: dict[str, Any], *, extra: bool = False) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": extra,
    }


AGGREGATE = _object(
    {
        "metric": TEXT,
        "mean": NUMBER,
        "low": NUMBER,
        "high": NUMBER,
        "n": COUNT,
        "threshold": {"type": ["number", "null"]},
        "higher_is_better": BOOL,
        "passed": BOOL,
    }
)
RESULT_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "pattern": "^[0-9A-Z]{26}$"},
    "node": {"type": "string", "pattern": "^eval-result:[0-9A-Z]{26}$"},
    "suite": TEXT,
    "suite_digest": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "subject": TEXT,
    "dataset": {"type": ["string", "null"]},
    "seed": {"type": "integer"},
    "run": {"type": ["string", "null"]},
    "passed": BOOL,
    "num_cases": COUNT,
    "aggregates": {"type": "object", "additionalProperties": AGGREGATE, "minProperties": 1},
    "created_by": TEXT,
    "created_at": TEXT,
}
RESULT = _object(RESULT_PROPERTIES)
CASE_ROW = _object(
    {
        "id": TEXT,
        "input": TEXT,
        "expected": {"type": ["string", "null"]},
        "contexts": {"type": "array", "items": TEXT},
        "labels": {"type": ["string", "null"]},
        "metadata": {"type": "object"},
        "output": TEXT,
        "scores": {"type": "object", "additionalProperties": NUMBER},
    }
)
RESULT_WITH_CASES = _object({**RESULT_PROPERTIES, "cases": {"type": "array", "items": CASE_ROW}})
RESULT_LIST = {"type": "array", "items": RESULT}
COMPARISON = _object(
    {
        "metric": TEXT,
        "method": {"enum": ["paired-bootstrap", "paired-permutation"]},
        "delta": NUMBER,
        "low": NUMBER,
        "high": NUMBER,
        "p_value": P_VALUE,
        "p_less": P_VALUE,
        "p_greater": P_VALUE,
        "p_worse_adjusted": P_VALUE,
        "p_better_adjusted": P_VALUE,
        "sd": {"type": "number", "minimum": 0},
        "mde": {"type": "number", "minimum": 0},
        "n": COUNT,
        "baseline_mean": NUMBER,
        "candidate_mean": NUMBER,
        "higher_is_better": BOOL,
        "regression": BOOL,
        "improvement": BOOL,
    }
)
COMPARE = _object(
    {
        "baseline": TEXT,
        "candidate": TEXT,
        "method": TEXT,
        "alpha": NUMBER,
        "correction": {"enum": ["holm", "none"]},
        "comparisons": {"type": "array", "items": COMPARISON},
    }
)
GATE = _object(
    {
        "passed": BOOL,
        "reasons": {"type": "array", "items": TEXT},
        "notes": {"type": "array", "items": TEXT},
        "alpha": NUMBER,
        "method": TEXT,
        "correction": {"enum": ["holm", "none"]},
        "power": NUMBER,
        "baseline": RESULT,
        "candidate": RESULT,
        "comparisons": {"type": "array", "items": COMPARISON},
    }
)
AGREEMENT = _object(
    {
        "rated": COUNT,
        "threshold": NUMBER,
        "metrics": {
            "type": "object",
            "additionalProperties": _object(
                {"kappa": {"type": "number", "minimum": -1, "maximum": 1}, "agreement": NUMBER, "n": COUNT}
            ),
        },
    }
)
GAP = _object(
    {
        "group": TEXT,
        "versus": TEXT,
        "gap": NUMBER,
        "low": NUMBER,
        "high": NUMBER,
        "excess_over_control": NUMBER,
        "excess_low": NUMBER,
        "excess_high": NUMBER,
        "beyond_control": BOOL,
    }
)
PROBE_AXIS = _object(
    {
        "axis": TEXT,
        "score": TEXT,
        "pairs": COUNT,
        "group_means": {"type": "object", "additionalProperties": NUMBER},
        "gap": NUMBER,
        "control": _object(
            {"swap": TEXT, "pairs": COUNT, "gap": NUMBER, "abs_gap": NUMBER, "low": NUMBER, "high": NUMBER}
        ),
        "gaps": {"type": "array", "items": GAP},
        "biased": BOOL,
        "per_input": {"type": "array"},
    }
)
PROBE = _object(
    {
        "suite": TEXT,
        "subject": TEXT,
        "confidence": NUMBER,
        "passed": BOOL,
        "axes": {"type": "array", "items": PROBE_AXIS, "minItems": 1},
    }
)


def parse_valid(text: str, schema: dict[str, Any]) -> Any:
    """Parse `text` as one strict JSON document (no NaN) and validate it against `schema`."""

    def no_constants(name: str) -> float:
        raise ValueError(f"{name} is not JSON")

    value = json.loads(text, parse_constant=no_constants)
    jsonschema.Draft202012Validator(schema).validate(value)
    return value


CALIBRATION = _object(
    {
        "suite": TEXT,
        "result": {"type": ["string", "null"]},
        "metric": TEXT,
        "n": COUNT,
        "pearson": NUMBER,
        "spearman": NUMBER,
        "kappa": {"type": "number", "minimum": -1, "maximum": 1},
        "agreement": P_VALUE,
        "mean_difference": NUMBER,
        "threshold": P_VALUE,
        "auc": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "reference": TEXT,
        "judge": _object(
            {"name": TEXT, "model": TEXT, "served_model": TEXT, "prompt": TEXT, "prompt_sha256": TEXT}, extra=True
        ),
        "unscored": {"type": "array", "items": COUNT},
    }
)
