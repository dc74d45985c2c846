"""Test doubles for the evals tests: the state behind the fake OpenAI-compatible server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeOpenAI:
    """What the server replies. `scripts[model]` is a queue of replies (a string, or an int HTTP status);
    `answers[model]` maps a user message to its reply; otherwise `default[model]`."""

    base_url: str = ""
    scripts: dict[str, list[str | int]] = field(default_factory=dict)
    answers: dict[str, dict[str, str]] = field(default_factory=dict)
    default: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    served: dict[str, str] = field(default_factory=dict)  # the `model` a reply names, if not the one asked for

    def reply(self, body: dict[str, Any]) -> str | int:
        self.requests.append(body)
        model = body["model"]
        if self.scripts.get(model):
            return self.scripts[model].pop(0)
        user = body["messages"][-1]["content"]
        if model in self.answers:
            return self.answers[model].get(user, "I don't know.")
        return self.default.get(model, "")
