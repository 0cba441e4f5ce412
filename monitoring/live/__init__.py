"""The running engine: scheduler, collection, alert state and history, the HTTP API."""
