"""Alerts: notification channels and the outbox of ``Alert`` rows (docs/ALERTS.md).

- ``models``: ``NotificationChannel`` (where to tell, about which checks, which transitions)
  and ``Alert`` (one message for one channel: the outbox row the sender claims and retries);
- ``enqueue``: which alerts a batch of state changes causes, written in the batch's own
  transaction; reminders; test alerts;
- ``bodies``: the webhook, Slack, Discord and email bodies, pure functions;
- ``delivery``: one try of one alert over HTTP or SMTP, and what its outcome means;
- ``sender``: claim due alerts with a lease, send them with bounded concurrency, record;
- ``admin``: channels, alerts, and the channels a check's page lists.
"""
