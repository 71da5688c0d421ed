"""The cashiers' thin client (client library, terminal app, offline journal)."""
