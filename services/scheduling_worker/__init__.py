"""scheduling-worker: Finds due workflows, creates their jobs and publishes them to the `jobs`
topic; relays the outbox to `workflows`.
"""
