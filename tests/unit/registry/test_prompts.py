from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from keel.core.errors import InputError, NotFoundError
from keel.registry._prompts import (
    alias_prompt,
    create_prompt,
    get_prompt,
    list_prompts,
    load_prompt_file,
    prompt_history,
    render_prompt,
    rollback_prompt,
)
from keel.store import Store, events, verify, walk
from keel.store.schema import prompt_versions

GREETING = "Hello {{ who }}, in a {{ tone }} tone."


def _count_versions(store: Store) -> int:
    with store.db.read() as conn:
        return int(conn.scalar(select(func.count()).select_from(prompt_versions)) or 0)


def test_create_first_version(store: Store) -> None:
    created = create_prompt(
        store,
        "greet",
        GREETING,
        variables={"who": {"description": "the person"}, "tone": {"default": "warm"}},
        description="says hello",
    )
    assert created.created and created.ref == "greet@v1" and created.version == 1
    assert created.variables == {
        "tone": {"description": None, "required": False, "default": "warm"},
        "who": {"description": "the person", "required": True},
    }
    assert created.created_by == store.actor and created.created_at.tzinfo is not None
    fetched = get_prompt(store, "greet")
    assert fetched.digest == created.digest and fetched.template == GREETING and not fetched.created
    assert fetched.description == "says hello" and fetched.examples == [] and fetched.aliases == ()
    with store.db.read() as conn:
        (event,) = events(conn, action="prompt.create")
        assert event.object_id == "prompt-version:greet@v1"
        assert event.details == {"digest": created.digest, "variables": ["tone", "who"]}
        assert walk(conn, "prompt-version:greet@v1", "upstream") == []  # a node, with no edge for v1


def test_variables_as_a_list_or_inferred(store: Store) -> None:
    listed = create_prompt(store, "a", "{{ x }}{{ y }}", variables=["x", "y"])
    assert listed.variables == {n: {"description": None, "required": True} for n in ("x", "y")}
    inferred = create_prompt(store, "b", "{{ x }}{% for e in examples %}{{ e.input }}{% endfor %}{{ y }}")
    assert inferred.variables == listed.variables  # `examples` is never declared
    assert create_prompt(store, "c", "no variables").variables == {}


def test_identical_content_is_idempotent(store: Store) -> None:
    first = create_prompt(store, "greet", GREETING, examples=[{"input": "hi", "output": "hello"}])
    again = create_prompt(
        store, "greet", GREETING, examples=[{"output": "hello", "input": "hi"}], description="only this differs"
    )
    assert not again.created and again.ref == "greet@v1" and again.digest == first.digest
    assert again.description is None  # a description alone does not make a version
    assert _count_versions(store) == 1
    with store.db.read() as conn:
        assert len(events(conn, action="prompt.create")) == 1


def test_changed_content_makes_a_new_version_derived_from_the_previous(store: Store) -> None:
    create_prompt(store, "greet", GREETING)
    second = create_prompt(store, "greet", GREETING, variables={"who": None, "tone": {"default": "dry"}})
    third = create_prompt(store, "greet", "Hi {{ who }}")
    assert (second.version, third.version) == (2, 3) and second.created and third.created
    assert len({get_prompt(store, f"greet@v{n}").digest for n in (1, 2, 3)}) == 3
    with store.db.read() as conn:
        upstream = walk(conn, "prompt-version:greet@v3", "upstream")
    assert [(hit.node, hit.edge_kind) for hit in upstream] == [
        ("prompt-version:greet@v2", "derived_from"),
        ("prompt-version:greet@v1", "derived_from"),
    ]
    # Going back to earlier content is a new version too: only the latest counts as "unchanged".
    assert create_prompt(store, "greet", GREETING).version == 4


def test_undeclared_variables_are_all_named(store: Store) -> None:
    with pytest.raises(InputError) as caught:
        create_prompt(store, "p", "{{ a }} {{ b }} {{ c }} {{ examples }}", variables=["a"])
    message = str(caught.value)
    assert "not declared: b, c" in message and "declare them or remove them from the template" in message
    assert _count_versions(store) == 0


def test_template_syntax_error_names_the_line(store: Store) -> None:
    with pytest.raises(InputError, match=r"syntax error on line 3 of the template"):
        create_prompt(store, "p", "one\ntwo\n{% if %}\n")


def test_bad_variable_declarations_are_reported_together(store: Store) -> None:
    with pytest.raises(InputError) as caught:
        create_prompt(
            store,
            "p",
            "{{ q }}",
            variables={"examples": None, "1x": None, "q": {"default": 1, "required": True, "typo": 2}},
        )
    message = str(caught.value)
    assert message.startswith("prompt 'p' has 1 problem: variables.q.typo: unknown key")
    with pytest.raises(InputError) as caught:
        create_prompt(
            store, "p", "{{ q }}", variables={"examples": None, "1x": None, "q": {"default": 1, "required": True}}
        )
    message = str(caught.value)
    assert "has 3 problems" in message
    assert "'examples' is reserved" in message and "'1x'" in message and "cannot be required" in message
    with pytest.raises(InputError, match="appear more than once"):
        create_prompt(store, "p", "{{ q }}", variables=["q", "q"])
    with pytest.raises(InputError, match="expected a prompt name"):
        create_prompt(store, "bad name", "x")


def test_render_fills_defaults_and_passes_examples(store: Store) -> None:
    create_prompt(
        store,
        "few",
        "{{ task }} ({{ tone }})\n{% for e in examples %}Q: {{ e.input }} A: {{ e.output }}\n{% endfor %}",
        variables={"task": {"description": "what to do"}, "tone": {"default": "brief"}},
        examples=[{"input": "2+2", "output": "4"}, {"input": "3+3", "output": "6"}],
    )
    rendered = render_prompt(store, "few", {"task": "add"})
    assert rendered.text == "add (brief)\nQ: 2+2 A: 4\nQ: 3+3 A: 6\n"
    assert rendered.variables == {"task": "add", "tone": "brief"} and rendered.ref == "few@v1"
    assert render_prompt(store, "few@v1", {"task": "add", "tone": "long"}).text.startswith("add (long)")


def test_render_reports_missing_and_unexpected_at_once(store: Store) -> None:
    create_prompt(
        store,
        "p",
        "{{ a }}{{ b }}{{ c }}",
        variables={"a": {"description": "the first"}, "b": None, "c": {"default": ""}},
    )
    with pytest.raises(InputError) as caught:
        render_prompt(store, "p", {"c": "x", "zed": 1, "examples": []})
    message = str(caught.value)
    assert "missing required variables: a (the first), b" in message
    assert "unexpected variables not declared by p@v1: examples, zed" in message
    assert "'examples' is reserved" in message


def test_render_refuses_a_sandbox_escape(store: Store) -> None:
    create_prompt(store, "evil", "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(InputError, match="tried an unsafe operation"):
        render_prompt(store, "evil")


def test_render_errors_on_optional_undefined_and_bad_values(store: Store) -> None:
    create_prompt(store, "opt", "{{ maybe }}", variables={"maybe": {"required": False}})
    with pytest.raises(InputError, match="'maybe' is undefined.*is defined"):
        render_prompt(store, "opt")
    create_prompt(store, "math", "{{ n + 1 }}")
    assert render_prompt(store, "math", {"n": 1}).text == "2"
    with pytest.raises(InputError, match="failed on the values given: TypeError"):
        render_prompt(store, "math", {"n": "one"})


def test_render_writes_nothing(store: Store) -> None:
    create_prompt(store, "p", "{{ a }}")
    with store.db.read() as conn:
        before = len(events(conn, limit=None))
    render_prompt(store, "p", {"a": 1})
    with store.db.read() as conn:
        assert len(events(conn, limit=None)) == before


def test_alias_history_and_rollback(store: Store) -> None:
    for text in ("one {{ x }}", "two {{ x }}", "three {{ x }}"):
        create_prompt(store, "p", text)
    first = alias_prompt(store, "p", "production", "v1", reason="first release", evidence="eval:01A")
    assert (first.from_version, first.to_version, first.evidence) == (None, 1, "eval:01A")
    alias_prompt(store, "p", "production", 3, reason="better")
    alias_prompt(store, "p", "staging", "2", reason="try")
    assert alias_prompt(store, "p", "canary", "staging", reason="same as staging").to_version == 2
    assert render_prompt(store, "p@production", {"x": "!"}).text == "three !"
    assert get_prompt(store, "p@v2").aliases == ("canary", "staging")
    back = rollback_prompt(store, "p", "production", reason="regressed")
    assert (back.from_version, back.to_version) == (3, 1)
    assert get_prompt(store, "p@production").version == 1
    moves = prompt_history(store, "p", "production")
    assert [(e.from_version, e.to_version, e.reason) for e in moves] == [
        (None, 1, "first release"),
        (1, 3, "better"),
        (3, 1, "regressed"),
    ]
    assert len(prompt_history(store, "p")) == 5
    (summary,) = list_prompts(store)
    assert (summary.name, summary.latest) == ("p", 3)
    assert summary.aliases == {"canary": 2, "production": 1, "staging": 2}


def test_alias_refuses_what_does_not_exist(store: Store) -> None:
    create_prompt(store, "p", "x")
    with pytest.raises(NotFoundError, match=r"has versions v1\.\.v1; got p@v7"):
        alias_prompt(store, "p", "production", "v7", reason="nope")
    with pytest.raises(NotFoundError, match="no prompt named 'ghost'"):
        alias_prompt(store, "ghost", "production", 1, reason="nope")
    with pytest.raises(InputError, match="at least 1"):
        alias_prompt(store, "p", "production", 0, reason="nope")
    with pytest.raises(InputError, match="names prompt 'q'"):
        alias_prompt(store, "p", "production", "q@v1", reason="nope")
    with pytest.raises(NotFoundError, match="no earlier version"):
        rollback_prompt(store, "p", "production", reason="nothing to go back to")
    with pytest.raises(NotFoundError, match="no prompt named 'ghost'"):
        prompt_history(store, "ghost")
    with pytest.raises(NotFoundError, match="no alias 'production'"):
        get_prompt(store, "p@production")
    assert prompt_history(store, "p") == []


def test_audit_chain_still_verifies(store: Store) -> None:
    create_prompt(store, "p", "{{ a }}")
    create_prompt(store, "p", "{{ a }}!")
    alias_prompt(store, "p", "production", 1, reason="ship")
    alias_prompt(store, "p", "production", 2, reason="upgrade")
    rollback_prompt(store, "p", "production", reason="oops")
    render_prompt(store, "p@production", {"a": 1})
    with store.db.read() as conn:
        report = verify(conn)
        actions = [e.action for e in events(conn, newest_first=False)]
    assert report.ok and report.checked == 5
    assert actions == ["prompt.create"] * 2 + ["prompt.alias"] * 3


def test_load_prompt_file(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "description: answers questions\n"
        "template: |\n  Q: {{ question }}\n  Style: {{ style }}\n"
        "variables:\n  question:\n    description: the question\n  style:\n    default: short\n"
        "examples:\n  - {input: a, output: b}\n"
    )
    loaded = load_prompt_file(path)
    assert loaded["variables"]["style"] == {"description": None, "required": False, "default": "short"}
    version = create_prompt(store, "qa", **loaded)
    assert version.examples == [{"input": "a", "output": "b"}]
    assert render_prompt(store, "qa", {"question": "why?"}).text == "Q: why?\nStyle: short"


def test_load_prompt_file_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "variables:\n  q:\n    required: maybe\n    colour: red\nexamples: [1]\nextra: true\ndescription: 3\n"
    )
    with pytest.raises(InputError) as caught:
        load_prompt_file(path)
    message = str(caught.value)
    assert f"prompt file {path} has 6 problems" in message
    for expected in (
        "template: missing; expected a value",
        "variables.q.required: input should be a valid boolean; got 'maybe'",
        "variables.q.colour: unknown key; expected only description, required, default",
        "examples.0: input should be a valid dictionary; got 1",
        "extra: unknown key; expected only template, variables, examples, description",
        "description: input should be a valid string; got 3",
    ):
        assert expected in message


def test_load_prompt_file_refuses_unreadable_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nothing is there"):
        load_prompt_file(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("template: [unclosed\n")
    with pytest.raises(InputError, match="expected YAML; line 2"):
        load_prompt_file(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(InputError, match="expected a mapping with keys template.*; found a list"):
        load_prompt_file(tmp_path / "list.yaml")
    (tmp_path / "undeclared.yaml").write_text("template: '{{ a }}{{ b }}'\nvariables: [a]\n")
    with pytest.raises(InputError, match="not declared: b"):
        load_prompt_file(tmp_path / "undeclared.yaml")
