"""Errors raised by the local stack."""


class ServiceError(RuntimeError):
    """A local service could not be installed, started or reached; the message names the cause."""
