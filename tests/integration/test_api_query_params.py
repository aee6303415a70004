"""A query parameter an operation does not take is a 422 naming it, not silently ignored."""

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/workflows", {"knd": "CONTAINER"}),  # a typo of a filter must not list everything
        ("/workflows", {"kind": "CONTAINER", "bogus": "1", "also": "2"}),
        ("/volumes", {"page": "2"}),
    ],
)
def test_an_unknown_query_parameter_is_named_in_a_422(
    http: httpx.Client, user: dict[str, str], path: str, params: dict[str, str]
) -> None:
    response = http.get(path, params=params, headers=user)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_fields"
    unknown = {name for name in params if name not in {"kind"}}
    assert {d["field"] for d in error["details"]} == unknown
    assert all("not a query parameter" in d["message"] for d in error["details"])


def test_known_query_parameters_still_work(http: httpx.Client, user: dict[str, str]) -> None:
    created = http.post(
        "/workflows", json={"name": "q", "kind": "HEARTBEAT", "interval": 5}, headers=user
    )
    assert created.status_code == 201
    listed = http.get(
        "/workflows", params={"kind": "HEARTBEAT", "limit": 10, "name": "q"}, headers=user
    )
    assert listed.status_code == 200, listed.text
    assert [w["id"] for w in listed.json()["workflows"]] == [created.json()["id"]]
    workflow = created.json()["id"]
    jobs = http.get(f"/workflows/{workflow}/jobs", params={"limit": 5}, headers=user)
    assert jobs.status_code == 200
    stream = http.get(f"/workflows/{workflow}", params={"verbose": "1"}, headers=user)
    assert stream.status_code == 422
