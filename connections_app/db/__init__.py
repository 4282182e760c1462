"""The resilient database layer: Django's backends plus a retrying cursor.

``backends/`` holds the ENGINEs (set from ``DATABASE_URL`` by ``project.config``); each adds
``retrying_cursor.retrying_execute`` to every connection it opens, in every thread.
``transactions.retry_transaction`` re-runs a whole atomic block; ``fail_fast`` turns every
backoff off where someone waits for an answer (web requests, probes); ``health`` has the
database probe and statistics; ``counters`` counts retries and reconnects and reports them;
``exceptions`` are the errors this layer raises itself, each with a message that says why.
"""
