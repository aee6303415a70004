"""Entry point: ``python -m services.workflow_worker`` or ``chronoverse-workflow-worker``."""

from chronoverse.runtime import worker_command
from services.workflow_worker.settings import Settings
from services.workflow_worker.worker import WorkflowWorker

main = worker_command(
    "workflow-worker",
    (
        "Consumes `workflows` and builds CONTAINER definitions: ensures the image, caches the "
        "definition in Redis."
    ),
    Settings,
    WorkflowWorker,
)

if __name__ == "__main__":
    main()
