"""Alembic migrations of the store, shipped in the package (``mhst-tracker db upgrade``)."""
