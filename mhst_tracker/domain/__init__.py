"""The clock engine: event contract, profiles, per-referral clocks, alert decisions, measures.

Pure Python with no Kafka, database or wall-clock access: the stream workers, the replay
command, imports and reports all call the same functions, so they all agree.
"""
