"""server: the public HTTP/JSON and gRPC API, live logs over SSE, and auth."""
