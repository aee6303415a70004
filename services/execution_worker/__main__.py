"""Entry point: ``python -m services.execution_worker`` or ``chronoverse-execution-worker``."""

from chronoverse.runtime import worker_command
from services.execution_worker.settings import Settings
from services.execution_worker.worker import ExecutionWorker

main = worker_command(
    "execution-worker",
    (
        "Consumes `jobs`, claims each under a lease and runs HEARTBEAT and CONTAINER jobs; "
        "streams log lines to `job_logs`."
    ),
    Settings,
    ExecutionWorker,
)

if __name__ == "__main__":
    main()
