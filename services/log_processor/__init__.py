"""log-processor: Consumes `job_logs`, stores the lines in Postgres in batches and fans them out on
Redis.
"""
