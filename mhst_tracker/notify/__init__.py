"""The notifier: breach alerts delivered to the people who act on them.

``mhst-tracker notify`` reads ``mhst.breach-alerts`` and delivers each routed alert to each
recipient of the routing file (``MHST_NOTIFY_CONFIG``) once, by email or by a signed
webhook, at once or in a daily digest, and a correction when a delivered breach is
withdrawn. See docs/notify.md.

The decisions are pure and tested without I/O: :mod:`.config` (the routing file and its
validation), :mod:`.routing` (who gets an alert), :mod:`.messages` (what they read),
:mod:`.schedule` (when digests are due, how long to wait before a retry). The I/O is thin:
:mod:`.service` (the Kafka consumer and the delivery rounds),
:mod:`mhst_tracker.adapters.notify` (SMTP, webhooks, Alertmanager's webhook) and
:mod:`mhst_tracker.adapters.store.ledger` (the delivery ledger).
"""
