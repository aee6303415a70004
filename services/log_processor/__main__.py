"""Entry point: ``python -m services.log_processor`` or ``chronoverse-log-processor``."""

from chronoverse.runtime import worker_command
from services.log_processor.settings import Settings
from services.log_processor.worker import LogProcessorWorker

main = worker_command(
    "log-processor",
    "Consumes `job_logs`, stores the lines in Postgres in batches and fans them out on Redis.",
    Settings,
    LogProcessorWorker,
)

if __name__ == "__main__":
    main()
