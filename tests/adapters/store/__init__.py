"""Tests of the store, mirroring mhst_tracker/adapters/store."""
