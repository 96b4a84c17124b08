"""The PostgreSQL/SQLite store: event history, the referral projection, alerts, rejections.

``database`` connects and migrates, ``models`` holds the tables, ``repository.Store`` writes
and queries, ``sink`` feeds it from Kafka, ``importer`` reads JSONL and CSV files, ``report``
builds the commissioners' monthly figures. See docs/store.md.
"""
