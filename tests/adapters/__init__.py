"""Tests of the adapters, mirroring mhst_tracker/adapters."""
