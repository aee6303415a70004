"""A consumer process whose handler never finishes: it reports each message, then blocks.

Used to show that messages a consumer took but never committed go to another group member after
the first one is killed. Run: python hanging_consumer.py <topic> <group>.
"""

import sys
import threading
from collections.abc import Sequence
from typing import Any

from chronoverse.kafka.consumer import ConsumerLoop, ConsumerOptions, Record
from chronoverse.messages import decode_object
from chronoverse.settings import KafkaSettings


def main() -> None:
    topic, group = sys.argv[1], sys.argv[2]

    def handle(batch: Sequence[Record[dict[str, Any]]]) -> None:
        for record in batch:
            print(f"got {record.value['n']}", flush=True)
        threading.Event().wait()  # never returns: the outcome is never recorded

    loop = ConsumerLoop(
        KafkaSettings.from_environ(),
        ConsumerOptions(
            group_id=group,
            topics=(topic,),
            client_id="hanging",
            max_batch_size=100,
            max_in_flight=1000,
        ),
        decode=decode_object,
        handle=handle,
    )
    loop.run(threading.Event())


if __name__ == "__main__":
    main()
