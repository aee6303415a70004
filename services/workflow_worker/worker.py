"""The workflow-worker process: the `workflows` consumer and the builder."""

from __future__ import annotations

import threading

from chronoverse import containers, redis_store
from chronoverse.checks import assignment_check, kafka_check, postgres_check, redis_check
from chronoverse.definition_cache import DefinitionCache
from chronoverse.domain import Topic
from chronoverse.events import WorkflowEvent
from chronoverse.health import Check
from chronoverse.kafka.assignment import AssignmentWatch
from chronoverse.kafka.consumer import ConsumerLoop, ConsumerOptions
from chronoverse.payloads import ContainerPolicy
from chronoverse.postgres import create_pool
from chronoverse.secrets import SecretBox
from services.workflow_worker.builds import Builder
from services.workflow_worker.images import Images
from services.workflow_worker.settings import Settings

CONSUMER_GROUP = "chronoverse-workflow-worker"


class WorkflowWorker:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._watch = AssignmentWatch.for_group(settings, settings.group(CONSUMER_GROUP))

    def checks(self) -> list[Check]:
        s = self._settings
        return [
            postgres_check(s),
            kafka_check(s, (s.topic(Topic.WORKFLOWS),)),
            assignment_check(self._watch),
            redis_check(s),
            containers.docker_check(s),
        ]

    def run(self, stop: threading.Event) -> None:
        s = self._settings
        pool = create_pool(s, name="workflow-worker")
        docker_client = containers.connect(s, timeout_s=600)  # pulls can be slow
        redis_client = redis_store.connect(s)
        images = Images(
            docker_client, redis_client, lock_ttl_s=s.pull_lock_ttl_s, wait_s=s.pull_wait_s
        )
        secrets = SecretBox.from_settings(s)
        definitions = DefinitionCache(redis_client, secrets, ttl_s=s.definition_cache_ttl_s)
        # Entries from before definitions were sealed hold env values in clear: drop them.
        definitions.purge_cleartext()
        builder = Builder(
            pool,
            images,
            docker_client,
            definitions,
            secrets=secrets,
            policy=ContainerPolicy.from_settings(s),
            installation=s.installation,
            stop_grace_s=s.stop_grace_s,
            docker_retry_s=s.docker_retry_s,
            public_url=s.public_url,
        )
        loop: ConsumerLoop[WorkflowEvent] = ConsumerLoop(
            self._settings,
            ConsumerOptions(
                group_id=self._settings.group(CONSUMER_GROUP),
                topics=(self._settings.topic(Topic.WORKFLOWS),),
                client_id="chronoverse-workflow-worker",
                max_batch_size=100,
                concurrency=4,
            ),
            decode=WorkflowEvent.decode,
            handle=builder.handle,
            watch=self._watch,
        )
        try:
            loop.run(stop)
        finally:
            pool.close()
            docker_client.close()
            redis_client.close()
