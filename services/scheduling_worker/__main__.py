"""Entry point: ``python -m services.scheduling_worker`` or ``chronoverse-scheduling-worker``."""

from chronoverse.runtime import worker_command
from services.scheduling_worker.settings import Settings
from services.scheduling_worker.worker import SchedulingWorker

main = worker_command(
    "scheduling-worker",
    (
        "Finds due workflows, creates their jobs and publishes them to the `jobs` topic; relays "
        "the outbox to `workflows`."
    ),
    Settings,
    SchedulingWorker,
)

if __name__ == "__main__":
    main()
