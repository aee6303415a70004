"""Faults under a mixed load, one after another on one running system, each judged on its own.

After each fault, within the windows stated here: every service answers /readyz 200; every job
committed before the fault ended is final, once, with its outcome never rewritten; no job that
the API created (201) or the scheduler owed (a slot) is lost; no two containers of one job ran at
once; no container of a final job is left; and the final attempt's log is that attempt's lines,
each once and in order (or, only where the broker lost them, explicitly marked incomplete).
See docs/reliability.md.
"""

from __future__ import annotations

import time
from datetime import datetime
from uuid import UUID

import pytest

from chronoverse.domain import Topic
from chronoverse.settings import KafkaSettings
from tests.chaos import poison
from tests.chaos.harness import QUERIES, SERVICES, Chaos

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

DOWNTIME_S = 3.0  # how long a killed or stopped piece stays down before it is started again
READY_WINDOW_S = 30.0  # every service answers /readyz 200 within this of the fault's end
SETTLE_WINDOW_S = 60.0  # every job committed before the fault's end is final within this
BROKER_SETTLE_WINDOW_S = 90.0  # lost job messages are published again after 10 s unclaimed


@pytest.mark.parametrize("name", SERVICES)
def test_kill_9_of_a_service_then_restart(chaos: Chaos, name: str) -> None:
    late_workflow = None
    if name == "workflow-worker":
        late_workflow = chaos.load.new_container_workflow()  # its build is due now
    if name in {"execution-worker", "log-processor"}:
        chaos.long_job_running(for_s=2.0)  # output is flowing when the process dies
    with chaos.fault(f"kill -9 {name}") as fault:
        chaos.supervisor.kill(name)
        time.sleep(DOWNTIME_S)
        fault.end()
        chaos.supervisor.spawn(name)
    report = chaos.recover(fault, ready_window_s=READY_WINDOW_S, settle_window_s=SETTLE_WINDOW_S)
    if late_workflow is not None:
        status = chaos.build_status(late_workflow, since=fault.ended, window_s=SETTLE_WINDOW_S)
        report.extra["late workflow build"] = status
        if status != "COMPLETED":
            report.violations.append(
                f"workflow {late_workflow} created before the kill is {status} "
                f"{SETTLE_WINDOW_S:.0f}s after the restart"
            )
    assert report.ok, report.text()


def test_postgres_restart(chaos: Chaos) -> None:
    with chaos.fault("Postgres restart (pg_ctl stop -m fast, 3 s down, start)") as fault:
        chaos.infra.postgres.stop_fast()
        time.sleep(DOWNTIME_S)
        chaos.infra.postgres.start()
        fault.end()
    report = chaos.recover(fault, ready_window_s=READY_WINDOW_S, settle_window_s=SETTLE_WINDOW_S)
    assert report.ok, report.text()


def test_redis_restart_and_flushall(chaos: Chaos) -> None:
    with chaos.fault("Redis restart + FLUSHALL") as fault:
        chaos.infra.redis.stop()
        time.sleep(DOWNTIME_S)
        chaos.infra.redis.start()
        chaos.infra.redis.flushall()
        fault.end()
    report = chaos.recover(fault, ready_window_s=READY_WINDOW_S, settle_window_s=SETTLE_WINDOW_S)
    assert report.ok, report.text()


def test_broker_restart_that_loses_all_data(chaos: Chaos) -> None:
    chaos.long_job_running(for_s=2.0)
    with chaos.fault("broker restart losing all data (topics re-created)") as fault:
        chaos.infra.broker.kill()  # memory storage: topics, messages, offsets, groups are gone
        time.sleep(DOWNTIME_S)
        chaos.infra.broker.start()
        chaos.create_topics()  # an operator's init: `chronoverse topics create`
        fault.end()
    # Lines the broker acknowledged and then lost are gone, and so are lines shipped until the
    # execution worker's log producer recovers: judged here (each must be marked incomplete),
    # up to the first job from which on no line was lost.
    shipping: list[float | None] = []

    def cutoff() -> datetime:
        seconds, at = chaos.log_shipping_recovered(fault, window_s=BROKER_SETTLE_WINDOW_S)
        shipping.append(seconds)
        return at

    report = chaos.recover(
        fault,
        ready_window_s=READY_WINDOW_S,
        settle_window_s=BROKER_SETTLE_WINDOW_S,
        incomplete_allowed=True,
        cutoff=cutoff,
    )
    shipping_s = shipping[0]
    report.extra["log shipping lossless again after (s)"] = (
        None if shipping_s is None else round(shipping_s, 1)
    )
    if shipping_s is None:
        report.violations.append(
            f"log lines still lost {BROKER_SETTLE_WINDOW_S:.0f}s after the broker came back"
        )
    assert report.ok, report.text()


def test_docker_daemon_restart_during_a_container_job(chaos: Chaos) -> None:
    chaos.long_job_running(for_s=2.0)
    with chaos.fault("Docker daemon restart during a container job") as fault:
        chaos.infra.dockerd.stop()  # its containers are stopped with it
        chaos.recorder.daemon_stopped(time.time_ns())
        time.sleep(DOWNTIME_S)
        chaos.infra.dockerd.start()
        fault.end()
    report = chaos.recover(fault, ready_window_s=READY_WINDOW_S, settle_window_s=SETTLE_WINDOW_S)
    assert report.ok, report.text()


def test_a_poison_message_on_each_topic(chaos: Chaos) -> None:
    settings = KafkaSettings.from_environ(chaos.stack.env)
    assert chaos.load.workflows is not None
    workflow = chaos.load.workflows.manual_container
    (row,) = chaos.db.rows(QUERIES.poison_targets, {"id": workflow})
    messages = poison.poisons(row["job_id"], UUID(workflow), row["user_id"])
    before = {topic: poison.dead_letters(settings, topic) or 0 for topic in Topic}
    with chaos.fault("a poison message on each topic") as fault:
        poison.send(settings, messages)
        fault.end()
    report = chaos.recover(fault, ready_window_s=READY_WINDOW_S, settle_window_s=SETTLE_WINDOW_S)
    # Handler errors are retried with backoff before they are dead-lettered: wait for them.
    expected = {
        topic: before[topic] + sum(1 for m in messages if m.topic is topic and m.dead_letter)
        for topic in Topic
    }
    found: dict[Topic, int | None] = {}
    deadline = fault.ended + SETTLE_WINDOW_S if fault.ended else time.monotonic()
    while True:
        found = {topic: poison.dead_letters(settings, topic) for topic in Topic}
        if all((found[t] or 0) >= expected[t] for t in Topic) or time.monotonic() > deadline:
            break
        time.sleep(1)
    report.extra["dead-lettered after (s)"] = round(time.monotonic() - (fault.ended or 0), 1)
    for topic in Topic:
        if found[topic] is None:
            report.violations.append(f"no dead-letter topic {settings.topic(topic)}.dlq")
        elif (found[topic] or 0) < expected[topic]:
            report.violations.append(
                f"{settings.topic(topic)}.dlq holds {(found[topic] or 0) - before[topic]} new "
                f"dead letters {SETTLE_WINDOW_S:.0f}s after the poison, expected "
                f"{expected[topic] - before[topic]}: "
                + ", ".join(m.what for m in messages if m.topic is topic and m.dead_letter)
            )
    assert report.ok, report.text()


def test_after_every_fault_the_load_drains_and_leaves_nothing_behind(chaos: Chaos) -> None:
    """The end: stop the load, terminate every workflow, and judge everything once more."""
    chaos.load.pause()
    assert chaos.load.workflows is not None
    for workflow in [
        chaos.load.workflows.manual_container,
        chaos.load.workflows.long_container,
        chaos.load.workflows.manual_check,
        *chaos.load.workflows.interval,
    ]:
        response = chaos.load.user.http.post(f"/workflows/{workflow}/terminate")
        assert response.status_code == 200, response.text
    with chaos.fault("the end: load stopped, workflows terminated") as fault:
        fault.end()
    report = chaos.recover(fault, ready_window_s=READY_WINDOW_S, settle_window_s=SETTLE_WINDOW_S)
    leftovers = chaos.recorder.labelled()
    if leftovers:
        report.violations.append(f"job containers remain at the end: {sorted(leftovers)}")
    assert report.ok, report.text()
