"""The operator's API calls turn failed responses into kopf errors with the server's Retry-After (found by
tests/e2e/test_api_faults.py: the response's headers were dropped, so a 429's Retry-After never reached the
back-off)."""

from __future__ import annotations

from typing import Any

import pytest

from gemma4_operator.controller.kube import InvalidRequestError, Kube, RetryableApiError


class _Response:
    """What ``ApiClient.call_api`` returns (kubernetes.client.rest.RESTResponse): status, reason, headers, read()."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.reason, self.headers, self.data = status, "Reason", headers, body

    def read(self) -> bytes:
        return self.data


class _ApiClient:
    def __init__(self, response: _Response) -> None:
        self.response = response

    def param_serialize(self, **_: Any) -> tuple[str, str, dict[str, str], Any, None]:
        return "GET", "https://api/x", {}, None, None

    def call_api(self, *_: Any, **__: Any) -> _Response:
        return self.response


def _failing(status: int, headers: dict[str, str], message: str = "slow down") -> Kube:
    body = b'{"kind": "Status", "message": "%s"}' % message.encode()
    return Kube(_ApiClient(_Response(status, headers, body)))  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "reason"), [(429, "Throttled"), (503, "ServerError")])
def test_retry_after_of_a_failed_call_reaches_the_error(status: int, reason: str) -> None:
    with pytest.raises(RetryableApiError) as raised:
        _failing(status, {"Retry-After": "7"}).list("v1", "Service", "ml")
    assert raised.value.reason == reason
    assert raised.value.retry_after == 7.0
    assert f"HTTP {status}: slow down" in str(raised.value)


def test_without_retry_after_the_operator_backs_off_by_itself() -> None:
    with pytest.raises(RetryableApiError) as raised:
        _failing(500, {}).list("v1", "Service", "ml")
    assert raised.value.retry_after is None


def test_the_server_refusing_the_object_is_permanent() -> None:
    with pytest.raises(InvalidRequestError, match=r"HTTP 422: spec\.x: Invalid value"):
        _failing(422, {}, "spec.x: Invalid value").list("v1", "Service", "ml")
