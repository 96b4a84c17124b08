"""The Faust stream workers: topics, tables, agents and timers around the clock engine."""
