"""workflow-worker: Consumes `workflows` and builds CONTAINER definitions: ensures the image,
caches the definition in Redis.
"""
