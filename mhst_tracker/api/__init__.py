"""The ingestion API: authenticated HTTP intake of referral events (``mhst-tracker api``).

``intake`` turns a request body into per-item verdicts with the engine's one parser (pure,
no I/O); ``identifiers`` handles NHS numbers that arrive anyway; ``tokens`` and
``ratelimit`` decide who may send and how fast; ``app`` is the FastAPI application that
ties them to the events producer; ``openapi`` writes the checked-in OpenAPI document.
See docs/api.md.
"""
