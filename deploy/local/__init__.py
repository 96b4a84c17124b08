"""The local stack: a real Kafka broker, PostgreSQL server and Prometheus on loopback.

One interface serves the demo, the test fixtures and a developer at a shell:
each service has ``start()``, ``wait_ready()`` and ``stop()``, and
``python -m deploy.local up`` starts all three and prints their addresses.
"""

from deploy.local.errors import ServiceError
from deploy.local.kafka import KafkaBroker
from deploy.local.postgres import PostgresServer
from deploy.local.prometheus import PrometheusServer

__all__ = ["KafkaBroker", "PostgresServer", "PrometheusServer", "ServiceError"]
