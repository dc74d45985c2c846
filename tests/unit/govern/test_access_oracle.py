"""Keel's permission evaluator agrees with pycasbin's enforcer on the same RBAC-with-domains model.

Keel evaluates the rule by hand for speed (benchmarks/access.py); pycasbin, the well-kept engine, is the oracle:
random bindings, roles and requests must get the same answer from both.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from casbin import Enforcer
from casbin.model import Model
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.govern._access import ACTIONS, BUILTIN_ROLES, CASBIN_MODEL, allowed_by

NAMES = st.sampled_from(["faq", "faq-en", "faq-de", "hr", "chat", "chat-v2", "x"])
KINDS = st.sampled_from(["dataset", "model", "prompt", "deployment"])
SCOPES = st.one_of(
    st.just("*"),
    st.builds(lambda k, n, star: f"{k}:{n}{'*' if star else ''}", KINDS, NAMES, st.booleans()),
    st.builds(lambda k: f"{k}:*", KINDS),
)
ACTION_GLOBS = st.one_of(st.sampled_from(list(ACTIONS)), st.sampled_from(["*", "*.read", "dataset.*", "model.*"]))
ROLES = st.dictionaries(
    st.sampled_from(["custom-a", "custom-b"]), st.lists(ACTION_GLOBS, min_size=1, max_size=4), max_size=2
)
PRINCIPALS = st.sampled_from(["local:alice", "local:bob", "key:01M95H0EG7JWA7Y90R18C9KR3R"])


def _casbin(roles: dict[str, tuple[str, ...]], bindings: list[tuple[str, str, str]]) -> Enforcer:
    model = Model()
    model.load_model_from_text(CASBIN_MODEL)
    enforcer = Enforcer(model)
    enforcer.add_function("fnmatch", fnmatchcase)
    enforcer.add_named_domain_matching_func("g", fnmatchcase)
    enforcer.add_policies([[role, action] for role, actions in roles.items() for action in actions])
    if bindings:
        enforcer.add_grouping_policies([list(b) for b in bindings])
    return enforcer


@settings(max_examples=150, deadline=None)
@given(
    custom=ROLES,
    bindings=st.lists(
        st.tuples(PRINCIPALS, st.sampled_from([*BUILTIN_ROLES, "custom-a", "custom-b"]), SCOPES), max_size=6
    ),
    requests=st.lists(
        st.tuples(PRINCIPALS, st.builds(lambda k, n: f"{k}:{n}", KINDS, NAMES), st.sampled_from(list(ACTIONS))),
        min_size=1,
        max_size=10,
    ),
)
def test_keel_and_casbin_agree(
    custom: dict[str, list[str]], bindings: list[tuple[str, str, str]], requests: list[tuple[str, str, str]]
) -> None:
    roles = {**BUILTIN_ROLES, **{name: tuple(actions) for name, actions in custom.items()}}
    bindings = [b for b in bindings if b[1] in roles]
    oracle = _casbin(roles, bindings)
    for principal, resource, action in requests:
        grants = [(scope, roles[role]) for who, role, scope in bindings if who == principal]
        assert allowed_by(grants, resource, action) == oracle.enforce(principal, resource, action), (
            principal,
            resource,
            action,
            bindings,
        )
