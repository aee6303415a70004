"""The server's data operations: SQL (store/queries.sql) and the decisions next to it, each run on
a connection inside the caller's transaction. Only the application layer calls them."""
