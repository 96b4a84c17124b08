"""Deployment files and the local stack used by the demo, the tests and developers."""
