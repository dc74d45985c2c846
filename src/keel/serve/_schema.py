"""The OpenAI request schema the gateway validates against, and serves at `/openapi.json`.

Pydantic models of the fields Keel or a backend reads (types and ranges as OpenAI documents
them); unknown fields are allowed and forwarded untouched, so a newer client still works. The
gateway validates the parsed body and forwards the body itself, not a re-dump of the model.
Also the parse step: a size-bounded, depth-bounded JSON parse that refuses lone surrogates.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema

from keel.serve._errors import BadRequestError

__all__ = [
    "ChatCompletionRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "openapi_schema",
    "parse_body",
    "validate_request",
]

# Deeper JSON than this is refused: no OpenAI request nests past ~6 levels, and a body nested
# thousands deep would overflow the recursion of json.loads/dumps further down the path.
MAX_DEPTH = 64

_Int = Annotated[int, Field(strict=True)]
_Float = Annotated[float, Field(strict=True)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(_Open):
    """One part of a message's content (`{"type": "text", "text": …}`, images, audio, …)."""

    type: str
    text: str | None = None


class ChatMessage(_Open):
    """One chat message."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(_Open):
    """Options of a streamed answer."""

    include_usage: bool | None = Field(default=None, strict=True)


class _Generation(_Open):
    model: str = Field(min_length=1, max_length=256, description="The deployment's name.")
    max_tokens: _Int | None = Field(default=None, ge=1)
    max_completion_tokens: _Int | None = Field(default=None, ge=1)
    temperature: _Float | None = Field(default=None, ge=0, le=2)
    top_p: _Float | None = Field(default=None, ge=0, le=1)
    n: _Int | None = Field(default=None, ge=1, le=128)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: _Int | None = None
    stream: bool | None = Field(default=None, strict=True)
    stream_options: StreamOptions | None = None
    presence_penalty: _Float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: _Float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None


class ChatCompletionRequest(_Generation):
    """`POST /v1/chat/completions`."""

    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool | None = Field(default=None, strict=True)
    top_logprobs: _Int | None = Field(default=None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None


_TokenIds = Annotated[list[_Int], Field(min_length=1)]


class CompletionRequest(_Generation):
    """`POST /v1/completions`."""

    prompt: (
        str | Annotated[list[str], Field(min_length=1)] | _TokenIds | Annotated[list[_TokenIds], Field(min_length=1)]
    )
    logprobs: _Int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = Field(default=None, strict=True)
    best_of: _Int | None = Field(default=None, ge=1, le=20)
    suffix: str | None = None


class EmbeddingRequest(_Open):
    """`POST /v1/embeddings`."""

    model: str = Field(min_length=1, max_length=256, description="The deployment's name.")
    input: (
        str
        | Annotated[list[str], Field(min_length=1, max_length=2048)]
        | _TokenIds
        | Annotated[list[_TokenIds], Field(min_length=1, max_length=2048)]
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: _Int | None = Field(default=None, ge=1)
    user: str | None = None


_MODELS: dict[str, type[BaseModel]] = {
    "chat": ChatCompletionRequest,
    "completion": CompletionRequest,
    "embeddings": EmbeddingRequest,
}
_PATHS = {"chat": "/v1/chat/completions", "completion": "/v1/completions", "embeddings": "/v1/embeddings"}


_BRANCHES = {"str", "int", "float", "bool", "list", "dict", "none"}


def _param(loc: tuple[int | str, ...]) -> str:
    """`("messages", 0, "content")` → `messages[0].content`; union branch names (`str`, `list[int]`) are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in _BRANCHES and not any(c in part for c in "[-"):
            out += f".{part}" if out else part
    return out


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def _lone_surrogate(value: Any, path: str = "") -> str | None:
    """The path of the first string holding a lone surrogate (which no store or client can encode)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _lone_surrogate(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key)
        if found is not None:
            return found
    return None


def parse_body(raw: bytes, *, lone_surrogates: bool = False) -> dict[str, Any]:
    """The request body as a JSON object, refusing what later steps could not handle.

    `lone_surrogates=True` lets strings with lone surrogates through, for a caller that makes them storable
    itself (feedback escapes them).

    Raises:
        BadRequestError: Not JSON, not an object, nested deeper than 64 levels, or a string holding
            a lone surrogate (an unpaired UTF-16 half), with the parameter named where known.

    Examples:
        >>> parse_body(b'{"model": "chat"}')
        {'model': 'chat'}
    """
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BadRequestError(f"expected JSON nested at most {MAX_DEPTH} levels deep; got deeper") from None
    except ValueError:
        raise BadRequestError("expected a JSON object as the request body; could not parse it") from None
    if not isinstance(body, dict):
        raise BadRequestError(f"expected a JSON object as the request body; got {type(body).__name__}")
    # Cheap screens first (C-speed byte counts); the walks run only for bodies that may be hostile.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth_exceeds(body, MAX_DEPTH):
        raise BadRequestError(f"expected JSON nested at most {MAX_DEPTH} levels deep; got deeper")
    if not lone_surrogates and (b"\\ud" in raw or b"\\uD" in raw):
        where = _lone_surrogate(body)
        if where is not None:
            raise BadRequestError(
                f"expected text in `{where}` to be valid Unicode; got a lone surrogate (an unpaired \\ud800-\\udfff)",
                param=where,
            )
    return body


def validate_request(operation: str, body: dict[str, Any]) -> None:
    """Check `body` against the OpenAI schema of `operation`; unknown fields pass.

    Raises:
        BadRequestError: The first invalid field, named in `param`.

    Examples:
        >>> validate_request("chat", {"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        >>> validate_request("chat", {"model": "chat", "messages": ["hi"]})
        Traceback (most recent call last):
        ...
        keel.serve._errors.BadRequestError: invalid `messages[0]`: Input should be a valid dictionary ...
    """
    try:
        _MODELS[operation].model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # Of a union's failed branches, the one that got furthest into the value says the most.
        first = max(errors, key=lambda e: len(_param(e["loc"])))
        param = _param(first["loc"]) or None
        got = "none" if first["type"] == "missing" else json.dumps(first.get("input"), ensure_ascii=True, default=str)
        got = got if len(got) <= 80 else got[:77] + "..."
        message = f"invalid `{param or 'body'}`: {first['msg']}; got {got}"
        raise BadRequestError(message, hint="see the OpenAI API reference for this field", param=param) from None


@functools.cache
def openapi_schema() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the gateway's OpenAI routes, built from the request models."""
    _, defs = models_json_schema(
        [(model, "validation") for model in _MODELS.values()], ref_template="#/components/schemas/{model}"
    )
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["message", "type"]}},
    }
    paths: dict[str, Any] = {}
    for operation, model in _MODELS.items():
        paths[_PATHS[operation]] = {
            "post": {
                "operationId": operation,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
                },
                "responses": {
                    "200": {"description": "The answer (a JSON object, or server-sent events when streaming)."},
                    "default": {
                        "description": "An error in OpenAI's shape.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                },
            }
        }
    paths["/v1/models"] = {"get": {"operationId": "models", "responses": {"200": {"description": "Deployments."}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Keel gateway", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {**defs.get("$defs", {}), "Error": error},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
