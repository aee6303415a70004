"""The workflows pages over HTTP: the list's search, filters, counters and pages; the form's create,
edit, errors at their fields and masked secrets; the workflow page and its actions, each behind
the session's CSRF token; and another user's workflow as a 404 page.

No worker runs here, so no job runs unless a test starts one ("Run now" makes a PENDING job)."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.conftest import RunningServer, new_user

pytestmark = pytest.mark.integration

BUSYBOX = "local/busybox:latest"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Visitor:
    """A signed-in browser (the session cookie) and the same user's API token, for setup."""

    client: httpx.Client
    api: dict[str, str]

    def csrf(self) -> str:
        found = CSRF.search(self.client.get("/ui/workflows/new").text)
        assert found, "no CSRF field on the form"
        return found.group(1)

    def post(self, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        return self.client.post(path, data={"csrf_token": self.csrf(), **(data or {})})

    def create(self, **body: Any) -> dict[str, Any]:
        response = self.client.post("/workflows", json=body, headers=self.api)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def workflow(self, workflow_id: str) -> httpx.Response:
        return self.client.get(f"/workflows/{workflow_id}", headers=self.api)


def sign_in(server: RunningServer) -> Iterator[Visitor]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        email, api = new_user(client)
        signed_in = client.post(
            "/ui/login", data={"email": email, "password": "correct horse", "next": "/ui/"}
        )
        assert signed_in.status_code == 303, signed_in.text
        assert client.cookies.get("cv_session")
        yield Visitor(client=client, api=api)


@pytest.fixture
def visitor(server: RunningServer) -> Iterator[Visitor]:
    yield from sign_in(server)


@pytest.fixture
def stranger(server: RunningServer) -> Iterator[Visitor]:
    yield from sign_in(server)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def listed(page: str) -> list[str]:
    """The workflow ids of a list page, in order."""
    return re.findall(r'<tr data-workflow-id="([0-9a-f-]{36})"', page)


def counter(page: str, name: str) -> int:
    found = re.search(
        rf'data-counter="{name}"[^>]*>\s*<span class="count">(\d+)</span>', page, re.S
    )
    assert found, f"no {name} counter"
    return int(found.group(1))


def field_error(page: str, name: str) -> str | None:
    found = re.search(rf'data-field-error="{name}">([^<]*)<', page)
    return html.unescape(found.group(1)) if found else None


def input_value(page: str, name: str) -> str:
    found = re.search(rf'<input id="{name}" name="{name}"[^>]*value="([^"]*)"', page)
    assert found, f"no input {name}"
    return html.unescape(found.group(1))


def textarea(page: str, name: str) -> str:
    found = re.search(rf'<textarea id="{name}" name="{name}"[^>]*>([^<]*)</textarea>', page)
    assert found, f"no textarea {name}"
    return html.unescape(found.group(1))


def form(**fields: str) -> dict[str, str]:
    """A posted form: a HEARTBEAT liveness job every 5 minutes, with ``fields`` changed."""
    return {"kind": "HEARTBEAT", "schedule": "interval", "interval": "5", **fields}


# --- sign-in and CSRF ------------------------------------------------------------------------


def test_signed_out_visitors_are_sent_to_the_login_page(http: httpx.Client) -> None:
    response = http.get("/ui/workflows", params={"kind": "CONTAINER"})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=/ui/workflows%3Fkind%3DCONTAINER"


def test_a_post_without_the_sessions_csrf_token_is_refused(visitor: Visitor) -> None:
    workflow = visitor.create(name=unique("csrf"), kind="HEARTBEAT", interval=5)
    path = f"/ui/workflows/{workflow['id']}/terminate"
    assert visitor.client.post(path).status_code == 403
    assert visitor.client.post(path, data={"csrf_token": "0" * 64}).status_code == 403
    created = visitor.client.post("/ui/workflows", data=form(name=unique("no-csrf")))
    assert created.status_code == 403
    assert visitor.workflow(workflow["id"]).json()["state"] == "active"
    # With the token, the same request goes through.
    assert visitor.post(path).status_code == 303
    assert visitor.workflow(workflow["id"]).json()["state"] == "terminated"


# --- the list -----------------------------------------------------------------------------------


def test_the_list_searches_filters_and_counts(visitor: Visitor, server: RunningServer) -> None:
    tag = uuid.uuid4().hex[:6]
    alpha = visitor.create(name=f"alpha-{tag}-1", kind="HEARTBEAT", interval=5)
    alpha2 = visitor.create(name=f"ALPHA-{tag}-2", kind="HEARTBEAT", interval=5)
    box = visitor.create(
        name=f"box-{tag}", kind="CONTAINER", interval=60, payload={"image": BUSYBOX}
    )
    paused = visitor.create(name=f"paused-{tag}", kind="HEARTBEAT", interval=5)
    gone = visitor.create(name=f"gone-{tag}", kind="HEARTBEAT", interval=5)
    assert visitor.client.post(f"/workflows/{paused['id']}/pause", headers=visitor.api).is_success
    assert visitor.client.post(f"/workflows/{gone['id']}/terminate", headers=visitor.api).is_success
    # Failing: as the execution worker leaves a workflow whose last job failed.
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE workflows SET consecutive_job_failures_count = 1 WHERE id = %s", (box["id"],)
        )
        conn.execute(
            "UPDATE workflows SET health = 'FAILING', consecutive_job_failures_count = 2 "
            "WHERE id = %s",
            (gone["id"],),  # terminated: not counted as failing
        )

    page = visitor.client.get("/ui/workflows")
    assert page.status_code == 200
    assert "New workflow" in page.text and 'href="/ui/workflows/new"' in page.text
    assert set(listed(page.text)) == {w["id"] for w in (alpha, alpha2, box, paused, gone)}
    assert listed(page.text)[0] == gone["id"]  # newest first
    assert [counter(page.text, n) for n in ("active", "paused", "terminated", "failing")] == [
        3,
        1,
        1,
        1,
    ]

    def ids(**params: str) -> set[str]:
        response = visitor.client.get("/ui/workflows", params=params)
        assert response.status_code == 200, response.text
        return set(listed(response.text))

    assert ids(name=f"alpha-{tag}") == {alpha["id"], alpha2["id"]}  # case-insensitive
    assert ids(kind="CONTAINER") == {box["id"]}
    assert ids(kind="HEARTBEAT", name=f"alpha-{tag}-1") == {alpha["id"]}
    assert ids(state="paused") == {paused["id"]}
    assert ids(state="terminated") == {gone["id"]}
    assert ids(state="active") == {alpha["id"], alpha2["id"], box["id"]}
    assert ids(failing="true") == {box["id"]}
    assert ids(build_status="QUEUED") == {w["id"] for w in (alpha, alpha2, box, paused, gone)}
    assert ids(build_status="COMPLETED") == set()
    # Empty selects mean "any".
    assert len(ids(kind="", state="", build_status="", name="")) == 5

    # The counters are links that set their filter and keep the others.
    filtered = visitor.client.get("/ui/workflows", params={"kind": "CONTAINER"}).text
    assert 'href="/ui/workflows?kind=CONTAINER&amp;state=paused"' in filtered
    assert 'href="/ui/workflows?kind=CONTAINER&amp;failing=true"' in filtered
    current = visitor.client.get("/ui/workflows", params={"state": "paused"}).text
    assert re.search(r'data-counter="paused"\s+aria-current="page"', current)
    assert (
        "No workflow matches these filters."
        in visitor.client.get("/ui/workflows", params={"name": f"nothing-{tag}"}).text
    )


def test_the_list_pages_with_a_cursor_kept_in_the_url(visitor: Visitor) -> None:
    made = [visitor.create(name=f"page-{i}", kind="HEARTBEAT", interval=5)["id"] for i in range(5)]
    seen: list[str] = []
    url: str | None = "/ui/workflows?limit=2"
    pages = 0
    while url:
        response = visitor.client.get(html.unescape(url))
        assert response.status_code == 200, response.text
        seen += listed(response.text)
        pages += 1
        found = re.search(r'<a href="([^"]+)" rel="next">Next</a>', response.text)
        url = found.group(1) if found else None
        if url:
            assert "limit=2" in url and "cursor=" in url
            assert pages < 5
    assert seen == made[::-1]
    assert pages == 3


def test_bad_filters_are_shown_not_ignored(visitor: Visitor) -> None:
    response = visitor.client.get("/ui/workflows", params={"kind": "CRON"})
    assert response.status_code == 422
    assert "These filters cannot be used" in response.text and "kind" in response.text
    # A parameter the page does not take is an error, as on the JSON API.
    assert visitor.client.get("/ui/workflows", params={"knd": "CONTAINER"}).status_code == 422


# --- the form -----------------------------------------------------------------------------------


def test_create_a_heartbeat_through_the_form(visitor: Visitor) -> None:
    page = visitor.client.get("/ui/workflows/new")
    assert page.status_code == 200
    assert ">Create</button>" in page.text
    for label in ("name", "kind", "interval", "cron", "timezone", "endpoint", "image", "env"):
        assert f'<label for="{label}">' in page.text, label

    name = unique("liveness")
    response = visitor.post(
        "/ui/workflows", form(name=name, max_consecutive_job_failures_allowed="4")
    )
    assert response.status_code == 303, response.text
    workflow_id = response.headers["location"].removeprefix("/ui/workflows/")
    stored = visitor.workflow(workflow_id).json()
    assert stored["name"] == name
    assert stored["kind"] == "HEARTBEAT" and stored["payload"] == {}
    assert stored["interval"] == 5 and stored["max_consecutive_job_failures_allowed"] == 4
    shown = visitor.client.get(response.headers["location"])
    assert shown.status_code == 200 and f"<h1>{name}</h1>" in shown.text


def test_the_same_form_sent_twice_creates_one_workflow(visitor: Visitor) -> None:
    name = unique("twice")
    sent = form(name=name, idempotency_key=str(uuid.uuid4()))
    first, second = visitor.post("/ui/workflows", sent), visitor.post("/ui/workflows", sent)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]


def test_create_a_cron_container_and_edit_it_keeping_masked_secrets(visitor: Visitor) -> None:
    name = unique("box")
    created = visitor.post(
        "/ui/workflows",
        {
            "name": name,
            "kind": "CONTAINER",
            "schedule": "cron",
            "cron": "0 3 1 1 *",
            "timezone": "Europe/Riga",
            "dst_gap": "skip",
            "dst_overlap": "twice",
            "image": BUSYBOX,
            "command": "sh\r\n-c\r\n",
            "args": "echo $GREETING",
            "env": "GREETING=hello world\nTOKEN=s3cret=",
            "working_dir": "/tmp",
        },
    )
    assert created.status_code == 303, created.text
    workflow_id = created.headers["location"].removeprefix("/ui/workflows/")
    stored = visitor.workflow(workflow_id).json()
    assert (stored["cron"], stored["timezone"]) == ("0 3 1 1 *", "Europe/Riga")
    assert stored["dst"] == {"gap": "skip", "overlap": "twice"}
    payload = stored["payload"]
    assert payload["image"] == BUSYBOX and payload["command"] == ["sh", "-c"]
    assert payload["args"] == ["echo $GREETING"] and payload["working_dir"] == "/tmp"
    assert payload["env"] == {"GREETING": "***", "TOKEN": "***"}

    # The workflow page and the edit form show secret values masked, never in plain.
    detail = visitor.client.get(f"/ui/workflows/{workflow_id}").text
    edit = visitor.client.get(f"/ui/workflows/{workflow_id}/edit")
    assert edit.status_code == 200 and ">Save</button>" in edit.text
    for text in (detail, edit.text):
        assert "s3cret" not in text and "hello world" not in text
    assert sorted(textarea(edit.text, "env").split("\n")) == ["GREETING=***", "TOKEN=***"]
    assert textarea(edit.text, "command") == "sh\n-c"
    assert input_value(edit.text, "cron") == "0 3 1 1 *"

    # Saved with the masks as shown: the values are kept, so the payload (and its build
    # generation) does not change; the name does.
    fields = {
        "name": f"{name}-renamed",
        "schedule": "cron",
        "cron": "0 3 1 1 *",
        "timezone": "Europe/Riga",
        "dst_gap": "skip",
        "dst_overlap": "twice",
        "max_consecutive_job_failures_allowed": "3",
        "image": BUSYBOX,
        "command": "sh\n-c",
        "args": "echo $GREETING",
        "env": "GREETING=***\nTOKEN=***",
        "working_dir": "/tmp",
    }
    saved = visitor.post(f"/ui/workflows/{workflow_id}/edit", fields)
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"/ui/workflows/{workflow_id}"
    after = visitor.workflow(workflow_id).json()
    assert after["name"] == f"{name}-renamed"
    assert after["generation"] == stored["generation"]
    # A changed value is a new payload; a removed key is gone.
    changed = visitor.post(
        f"/ui/workflows/{workflow_id}/edit",
        {**fields, "env": "GREETING=bye", "schedule": "interval", "interval": "30"},
    )
    assert changed.status_code == 303, changed.text
    final = visitor.workflow(workflow_id).json()
    assert final["generation"] == stored["generation"] + 1
    assert final["payload"]["env"] == {"GREETING": "***"}
    assert final["interval"] == 30 and final["cron"] is None


def test_edit_keeps_what_the_form_does_not_show(visitor: Visitor) -> None:
    workflow = visitor.create(
        name=unique("limits"),
        kind="CONTAINER",
        interval=60,
        payload={"image": BUSYBOX, "resources": {"memory_mb": 64}, "timeout_seconds": 30},
    )
    edit = visitor.client.get(f"/ui/workflows/{workflow['id']}/edit").text
    fields = {
        "name": input_value(edit, "name"),
        "schedule": "interval",
        "interval": input_value(edit, "interval"),
        "max_consecutive_job_failures_allowed": "5",
        "image": input_value(edit, "image"),
    }
    assert visitor.post(f"/ui/workflows/{workflow['id']}/edit", fields).status_code == 303
    stored = visitor.workflow(workflow["id"]).json()
    assert stored["max_consecutive_job_failures_allowed"] == 5
    assert stored["payload"]["resources"]["memory_mb"] == 64
    assert stored["payload"]["timeout_seconds"] == 30


def test_errors_are_shown_at_their_fields_with_the_input_kept(visitor: Visitor) -> None:
    name = unique("bad")
    bad_interval = visitor.post("/ui/workflows", form(name=name, interval="0"))
    assert bad_interval.status_code == 422
    assert field_error(bad_interval.text, "interval")
    assert 'id="interval" name="interval" type="number" value="0"' in bad_interval.text
    assert re.search(r'id="interval"[^>]*aria-describedby="[^"]*interval-error', bad_interval.text)
    assert field_error(bad_interval.text, "name") is None
    assert input_value(bad_interval.text, "name") == name

    bad_image = visitor.post(
        "/ui/workflows",
        form(name=name, kind="CONTAINER", image="Not An Image!", env="OK=1\nno separator"),
    )
    assert bad_image.status_code == 422
    assert "line 2" in (field_error(bad_image.text, "env") or "")
    bad_image = visitor.post("/ui/workflows", form(name=name, kind="CONTAINER", image="Bad Image"))
    assert bad_image.status_code == 422
    assert field_error(bad_image.text, "image"), bad_image.text
    assert input_value(bad_image.text, "image") == "Bad Image"

    # HTTP options without an endpoint: the API says the endpoint is needed, at the endpoint.
    no_endpoint = visitor.post("/ui/workflows", form(name=name, headers="X-Token: abc"))
    assert no_endpoint.status_code == 422
    assert "required" in (field_error(no_endpoint.text, "endpoint") or "")
    assert textarea(no_endpoint.text, "headers") == "X-Token: abc"

    bad_zone = visitor.post(
        "/ui/workflows", form(name=name, schedule="cron", cron="0 3 * * *", timezone="Mars/Base")
    )
    assert bad_zone.status_code == 422
    assert "IANA" in (field_error(bad_zone.text, "timezone") or "")
    # Nothing was created.
    listed_page = visitor.client.get("/ui/workflows", params={"name": name}).text
    assert listed(listed_page) == []


def test_the_schedule_preview_fragment(visitor: Visitor) -> None:
    preview = visitor.client.get(
        "/ui/workflows/schedule-preview",
        params={
            "schedule": "cron",
            "cron": "30 2 * * *",
            "timezone": "Europe/Riga",
            "dst_gap": "shift",
            "dst_overlap": "once",
            "interval": "5",
        },
    )
    assert preview.status_code == 200
    assert "<html" not in preview.text  # a fragment, swapped into the form
    assert preview.text.count("<li>") == 5
    assert "data-local-time" in preview.text and "EE" in preview.text  # EET or EEST
    interval = visitor.client.get(
        "/ui/workflows/schedule-preview", params={"schedule": "interval", "interval": "15"}
    )
    assert interval.text.count("<li>") == 5
    bad = visitor.client.get(
        "/ui/workflows/schedule-preview", params={"schedule": "cron", "cron": "61 * * * *"}
    )
    assert bad.status_code == 200 and "data-preview-errors" in bad.text and "cron" in bad.text


# --- the workflow page and its actions ----------------------------------------------------------


def test_the_workflow_page_shows_details_runs_and_figures(visitor: Visitor) -> None:
    workflow = visitor.create(
        name=unique("details"),
        kind="HEARTBEAT",
        interval=15,
        max_consecutive_job_failures_allowed=4,
        payload={"endpoint": "https://example.com/health", "headers": {"X-Key": "hidden!"}},
    )
    page = visitor.client.get(f"/ui/workflows/{workflow['id']}")
    assert page.status_code == 200
    text = page.text
    assert "https://example.com/health" in text and "hidden!" not in text
    assert "&#34;X-Key&#34;: &#34;***&#34;" in text or '"X-Key": "***"' in text
    assert re.search(r'<meter id="failures"[^>]*max="4"[^>]*value="0"', text, re.S)
    assert text.count("data-countdown=") == 5
    assert "data-local-zone" in text
    for card in ("jobs", "success-rate", "duration", "execution-time"):
        assert f'data-card="{card}"' in text
    for button in ("Run now", "Pause", "Terminate", "Delete"):
        assert f">{button}</button>" in text
    assert ">Resume</button>" not in text
    assert 'data-confirm="Terminate' in text and 'data-confirm="Delete' in text
    assert "<dialog" in text and "onclick" not in text and "<script>" not in text
    assert "Fire ledger" in text and "No jobs yet." in text


def mark_built(server: RunningServer, workflow_id: str) -> None:
    """As the workflow worker does (it does not run here)."""
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE workflows SET build_status = 'COMPLETED' WHERE id = %s", (workflow_id,)
        )


def test_run_now_pause_resume_terminate_and_delete(visitor: Visitor, server: RunningServer) -> None:
    workflow = visitor.create(name=unique("actions"), kind="HEARTBEAT", interval=10080)
    base = f"/ui/workflows/{workflow['id']}"
    # Refused while its build is not done: the page says why.
    early = visitor.post(f"{base}/run")
    assert early.status_code == 409 and "data-action-error" in early.text
    assert "cannot run yet" in early.text
    mark_built(server, workflow["id"])

    ran = visitor.post(f"{base}/run", {"idempotency_key": str(uuid.uuid4())})
    assert ran.status_code == 303 and ran.headers["location"] == f"{base}#jobs"
    jobs = visitor.client.get(f"/workflows/{workflow['id']}/jobs", headers=visitor.api).json()[
        "jobs"
    ]
    assert [j["trigger"] for j in jobs] == ["MANUAL"]
    page = visitor.client.get(base).text
    assert f'href="{base}/jobs/{jobs[0]["id"]}"' in page
    # The jobs list filters by trigger and status.
    assert jobs[0]["id"] in visitor.client.get(base, params={"trigger": "MANUAL"}).text
    automatic = visitor.client.get(base, params={"trigger": "AUTOMATIC"}).text
    assert jobs[0]["id"] not in automatic and "No job matches these filters." in automatic
    assert jobs[0]["id"] not in visitor.client.get(base, params={"status": "FAILED"}).text
    assert visitor.client.get(base, params={"status": "DONE"}).status_code == 200

    assert visitor.post(f"{base}/pause").status_code == 303
    assert visitor.workflow(workflow["id"]).json()["state"] == "paused"
    paused = visitor.client.get(base).text
    assert ">Resume</button>" in paused and ">Pause</button>" not in paused
    assert visitor.post(f"{base}/resume").status_code == 303
    assert visitor.workflow(workflow["id"]).json()["state"] == "active"

    assert visitor.post(f"{base}/terminate").status_code == 303
    assert visitor.workflow(workflow["id"]).json()["state"] == "terminated"
    ended = visitor.client.get(base).text
    assert "data-terminated" in ended and "terminated by the user" in ended
    for gone in ("Run now", "Pause", "Resume", "Terminate", "Edit"):
        assert f">{gone}</" not in ended, gone
    assert ">Delete</button>" in ended
    # An action that cannot apply any more says why, on the page.
    refused = visitor.post(f"{base}/pause")
    assert refused.status_code == 409
    assert "data-action-error" in refused.text
    edit = visitor.client.get(f"{base}/edit").text
    assert "cannot change" in edit and ">Save</button>" not in edit

    deleted = visitor.post(f"{base}/delete")
    assert deleted.status_code == 303 and deleted.headers["location"] == "/ui/workflows"
    assert visitor.workflow(workflow["id"]).status_code == 404
    assert visitor.client.get(base).status_code == 404


def test_another_users_workflow_is_a_404_page(
    visitor: Visitor, stranger: Visitor, server: RunningServer
) -> None:
    name = unique("private")
    workflow = visitor.create(name=name, kind="HEARTBEAT", interval=5)
    mark_built(server, workflow["id"])
    base = f"/ui/workflows/{workflow['id']}"
    for path in (base, f"{base}/edit", f"/ui/workflows/{uuid.uuid4()}"):
        response = stranger.client.get(path)
        assert response.status_code == 404, path
        assert "text/html" in response.headers["content-type"]
        assert name not in response.text
    for action in ("run", "pause", "terminate", "delete", "edit"):
        assert stranger.post(f"{base}/{action}", form(name="taken")).status_code == 404, action
    mine = visitor.workflow(workflow["id"]).json()
    assert (mine["state"], mine["name"]) == ("active", name)
    assert (
        visitor.client.get(f"/workflows/{workflow['id']}/jobs", headers=visitor.api).json()["jobs"]
        == []
    )
