"""Key checks on the gateway's side routes (`/metrics`, `/v1/models/{id}`), on a real server (uvicorn on 127.0.0.1).

Every route that checks a key answers a throttled one with OpenAI's 429 and `Retry-After`, never a 500, and counts
its failed checks against the caller's address as the completion routes do.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from keel.core.errors import InputError
from keel.govern import create_key
from keel.serve import create_deployment
from keel.store import Store


def _wrong(secret: str, i: int) -> dict[str, str]:
    key_id = secret.split("_")[1]
    return {"authorization": f"Bearer keel_{key_id}_{'x' * 30}{i}"}


def test_a_throttled_key_on_metrics_is_a_429_not_a_500(store: Store, gateway_server: Any) -> None:
    secret = create_key(store, "scraper", scopes=["metrics"]).secret
    with gateway_server(metrics_require_key=True, auth_failures=3) as (url, _):
        with httpx.Client(base_url=url, timeout=30) as client:
            statuses = [client.get("/metrics", headers=_wrong(secret, i)).status_code for i in range(3)]
            assert statuses == [401, 401, 401]
            throttled = client.get("/metrics", headers=_wrong(secret, 9))
            assert throttled.status_code == 429, throttled.text
            assert throttled.json()["error"]["code"] == "rate_limit_exceeded"
            assert int(throttled.headers["retry-after"]) >= 1
            assert client.get("/metrics", headers={"authorization": f"Bearer {secret}"}).status_code == 429


def test_failed_checks_on_side_routes_count_against_the_address(store: Store, gateway_server: Any) -> None:
    """Unknown key ids (no key to count them against) sent to /metrics and /v1/models/{id}: the address is limited."""
    with gateway_server(metrics_require_key=True, auth_failures=3) as (url, _):
        with httpx.Client(base_url=url, timeout=30) as client:
            statuses = []
            for i, path in enumerate(["/metrics", "/v1/models/chat"] * 3):
                unknown = {"authorization": f"Bearer keel_01M00000000000000000000{i:03d}_{'y' * 30}"}
                statuses.append(client.get(path, headers=unknown).status_code)
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429, 429], statuses


@pytest.mark.parametrize("name", ["feedback", "metrics"])
def test_a_deployment_cannot_take_the_name_of_a_key_scope(
    store: Store, upstream: str, chat_versions: tuple[str, str], name: str
) -> None:
    """A key scoped `feedback` (feedback only) or `metrics` (a scraper) would otherwise call that deployment."""
    with pytest.raises(InputError, match=f"other than 'feedback', 'metrics'; got '{name}'"):
        create_deployment(store, name, chat_versions[0], route={"upstream": f"{upstream}/v1"})


def test_a_trailing_slash_is_a_404_in_openais_shape_not_a_redirect_to_the_host_header(
    store: Store, gateway_server: Any, api_key: str
) -> None:
    """Starlette answered `/v1/chat/completions/` and `/metrics/` with a 307 to `http://<Host header>/…`: another
    site for any client whose Host a proxy or cache lets through, and no OpenAI error for the client."""
    with gateway_server() as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        for method, path in [("POST", "/v1/chat/completions/"), ("GET", "/metrics/"), ("GET", "/healthz/")]:
            answer = client.request(
                method, path, headers={"host": "evil.example", "authorization": f"Bearer {api_key}"}
            )
            assert answer.status_code == 404 and "location" not in answer.headers, (path, answer.headers)
            assert answer.json()["error"]["code"] == "not_found"


def test_the_console_under_the_gateway_still_answers_at_ui(store: Store) -> None:
    from keel.serve import Gateway, ServeSettings, create_app, serve_in_thread
    from keel.ui import mount_console

    app = create_app(Gateway(store, ServeSettings(require_keys=False)))
    mount_console(app, store)  # what `keel serve --ui` does
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        bare = client.get("/ui", headers={"host": "evil.example"})
        assert bare.status_code == 307 and bare.headers["location"] == "/ui/"  # relative: the Host plays no part
        assert client.get("/ui/", follow_redirects=True).url.path == "/ui/login"


def test_a_scoped_key_asking_for_no_model_gets_a_404_and_odd_names_are_escaped_once(
    store: Store, gateway_server: Any
) -> None:
    """`/v1/models/` named no deployment but answered a scoped key "may not call deployment ''" (403); a control
    character in a model name came back escaped twice (`ch\\\\x00at`), once by the store's escaping, once by `!r`."""
    secret = create_key(store, "scoped", scopes=["chat"]).secret
    auth = {"authorization": f"Bearer {secret}"}
    with gateway_server() as (url, _), httpx.Client(base_url=url, timeout=30) as client:
        empty = client.get("/v1/models/", headers=auth)
        assert empty.status_code == 404, empty.text
        assert empty.json()["error"]["message"].startswith("expected a deployment name after /v1/models/")
        odd = client.post(
            "/v1/chat/completions",
            headers=auth,
            json={"model": "ch\x00at", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert odd.status_code == 403, odd.text
        message = odd.json()["error"]["message"]
        assert "'ch\\x00at'" in message and "\\\\" not in message, message
