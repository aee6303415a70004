"""execution-worker: Consumes `jobs`, claims each under a lease and runs HEARTBEAT and CONTAINER
jobs; streams log lines to `job_logs`.
"""
