"""Cron schedules, previews, pause and resume and the fire ledger over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.integration


def create(http: httpx.Client, user: dict[str, str], **fields: Any) -> httpx.Response:
    body = {"name": "s", "kind": "HEARTBEAT", **fields}
    return http.post("/workflows", json=body, headers=user)


def fields_of(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {d["field"]: d["message"] for d in response.json()["error"]["details"]}


def test_a_cron_workflow_starts_at_its_next_slot_in_its_zone(
    http: httpx.Client, user: dict[str, str]
) -> None:
    response = create(http, user, cron="@daily", timezone="Europe/Riga")
    assert response.status_code == 201, response.text
    workflow = response.json()
    assert workflow["cron"] == "0 0 * * *"
    assert workflow["interval"] is None
    assert workflow["timezone"] == "Europe/Riga"
    assert workflow["dst"] == {"gap": "shift", "overlap": "once"}
    assert workflow["catchup"] == "latest"
    assert workflow["state"] == "active"
    next_run = datetime.fromisoformat(workflow["next_run_at"])
    # Midnight in Riga is 21:00 or 22:00 UTC, and in the future (not at once, as an interval).
    assert next_run > datetime.now(UTC)
    assert next_run.astimezone(UTC).hour in (21, 22)


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"cron": "@reboot"}, "cron", "@reboot"),
        ({"cron": "61 * * * *"}, "cron", ""),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "timezone", ""),
        ({"cron": "0 3 * * *", "interval": 5}, "cron", "not both"),
        ({}, "interval", "give a schedule"),
        ({"interval": 5, "timezone": "Europe/Riga"}, "timezone", "cron schedule only"),
        ({"interval": 5, "catchup_window_minutes": 5}, "catchup_window_minutes", "all only"),
        ({"interval": 5, "catchup": "sometimes"}, "catchup", ""),
        ({"cron": "0 3 * * *", "dst": {"gap": "jump"}}, "dst.gap", ""),
    ],
)
def test_bad_schedule_fields_are_a_422_naming_the_field(
    http: httpx.Client, user: dict[str, str], fields: dict[str, Any], field: str, says: str
) -> None:
    errors = fields_of(create(http, user, **fields))
    assert field in errors, errors
    assert says in errors[field]


def test_the_preview_shows_the_riga_dst_cases(http: httpx.Client, user: dict[str, str]) -> None:
    spring = http.post(
        "/schedules/preview",
        params={"count": 3, "from": "2027-03-27T12:00:00Z"},
        json={"cron": "0 3 * * *", "timezone": "Europe/Riga"},
        headers=user,
    )
    assert spring.status_code == 200, spring.text
    assert spring.json()["next"][0] == {
        "at": "2027-03-28T01:00:00Z",
        "local": "2027-03-28T04:00:00+03:00",
        "note": "dst_shifted",
    }
    autumn = http.post(
        "/schedules/preview",
        params={"count": 2, "from": "2027-10-30T12:00:00Z"},
        json={"cron": "0 3 * * *", "timezone": "Europe/Riga", "dst": {"overlap": "twice"}},
        headers=user,
    ).json()["next"]
    assert [(f["at"], f["note"]) for f in autumn] == [
        ("2027-10-31T00:00:00Z", None),
        ("2027-10-31T01:00:00Z", "dst_repeated"),
    ]
    assert fields_of(
        http.post(
            "/schedules/preview",
            params={"from": "2027-01-01T00:00:00"},
            json={"interval": 5},
            headers=user,
        )
    ) == {"from": "must have a time zone offset (e.g. 2027-03-28T00:00:00Z)"}


def test_a_saved_workflow_previews_its_own_series(http: httpx.Client, user: dict[str, str]) -> None:
    workflow = create(http, user, cron="30 9 * * 1-5", timezone="America/New_York").json()
    runs = http.get(
        f"/workflows/{workflow['id']}/schedule",
        params={"count": 3, "from": "2027-03-12T00:00:00Z"},
        headers=user,
    )
    assert runs.status_code == 200, runs.text
    # Friday in EST (UTC-5), then Monday and Tuesday in EDT (UTC-4) after the 14 March change.
    assert [f["at"] for f in runs.json()["next"]] == [
        "2027-03-12T14:30:00Z",
        "2027-03-15T13:30:00Z",
        "2027-03-16T13:30:00Z",
    ]
    every = create(http, user, interval=60).json()
    first = datetime.fromisoformat(every["next_run_at"])
    listed = http.get(f"/workflows/{every['id']}/schedule", params={"count": 2}, headers=user)
    assert datetime.fromisoformat(listed.json()["next"][0]["at"]) >= first


def test_pause_resume_and_the_ledger(
    http: httpx.Client, user: dict[str, str], server: RunningServer
) -> None:
    workflow = create(http, user, interval=1).json()
    wid = workflow["id"]
    paused = http.post(f"/workflows/{wid}/pause", headers=user)
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused"
    assert paused.json()["paused_at"] is not None
    assert http.post(f"/workflows/{wid}/pause", headers=user).json()["state"] == "paused"
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        # Built, and three slots into the past while paused.
        conn.execute(
            "UPDATE workflows SET build_status = 'COMPLETED', "
            "next_run_at = now() - interval '150 seconds' WHERE id = %s",
            (wid,),
        )
    manual = http.post(f"/workflows/{wid}/jobs", headers=user)
    assert manual.status_code == 201, manual.text  # manual runs are allowed while paused
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET status = 'COMPLETED' WHERE workflow_id = %s", (wid,))
    resumed = http.post(f"/workflows/{wid}/resume", headers=user)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["state"] == "active"
    fires = http.get(f"/workflows/{wid}/fires", headers=user)
    assert fires.status_code == 200, fires.text
    entries = fires.json()["fires"]
    # Newest first: the latest paused slot runs now (catch-up latest), the two before are PAUSED.
    assert [(e["outcome"], e["slots"]) for e in entries] == [("FIRED", 1), ("PAUSED", 2)]
    assert entries[0]["job_id"] is not None
    assert http.post(f"/workflows/{wid}/terminate", headers=user).status_code == 200
    assert http.post(f"/workflows/{wid}/resume", headers=user).status_code == 409
    assert http.post(f"/workflows/{wid}/pause", headers=user).status_code == 409
    assert http.get(f"/workflows/{wid}/schedule", headers=user).json() == {"next": []}


def test_an_update_switches_the_schedule(http: httpx.Client, user: dict[str, str]) -> None:
    wid = create(http, user, interval=5).json()["id"]
    to_cron = http.put(
        f"/workflows/{wid}", json={"cron": "0 3 * * *", "timezone": "Europe/Riga"}, headers=user
    )
    assert to_cron.status_code == 200, to_cron.text
    assert (to_cron.json()["interval"], to_cron.json()["cron"]) == (None, "0 3 * * *")
    zone = http.put(f"/workflows/{wid}", json={"timezone": "Asia/Kolkata"}, headers=user).json()
    assert (zone["cron"], zone["timezone"]) == ("0 3 * * *", "Asia/Kolkata")
    back = http.put(f"/workflows/{wid}", json={"interval": 10}, headers=user).json()
    assert (back["interval"], back["cron"], back["timezone"], back["dst"]) == (
        10,
        None,
        "UTC",
        None,
    )
    assert "timezone" in fields_of(
        http.put(f"/workflows/{wid}", json={"timezone": "Europe/Riga"}, headers=user)
    )


def test_other_users_cannot_touch_the_schedule(http: httpx.Client, user: dict[str, str]) -> None:
    from tests.integration.conftest import new_user

    wid = create(http, user, interval=5).json()["id"]
    _, other = new_user(http)
    for method, path in (
        ("POST", f"/workflows/{wid}/pause"),
        ("POST", f"/workflows/{wid}/resume"),
        ("GET", f"/workflows/{wid}/schedule"),
        ("GET", f"/workflows/{wid}/fires"),
    ):
        assert http.request(method, path, headers=other).status_code == 404, path
