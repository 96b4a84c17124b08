"""A real single-node Apache Kafka broker (KRaft) fetched from Maven Central and run locally.

The broker jars are fetched once with Maven (``deploy/kafka/pom.xml``) into the git-ignored
cache ``.cache/kafka/<version>/lib`` and reused by every later run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from deploy.local.errors import ServiceError
from deploy.local.process import (
    CACHE_DIR,
    REPO_ROOT,
    LocalServer,
    ManagedProcess,
    free_port,
    make_run_dir,
    port_in_use,
    require_free_port,
)

KAFKA_VERSION = os.environ.get("MHST_KAFKA_VERSION", "3.9.1")
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
TEMPLATE = REPO_ROOT / "deploy" / "kafka" / "server.properties.template"
_FAILURE_HINTS = {
    "Address already in use": "a port it needs is already in use by another process",
    "java.lang.OutOfMemoryError": "the JVM ran out of memory (raise MHST_KAFKA_HEAP)",
    "UnsupportedClassVersionError": "this Java is too old for Kafka",
}


def kafka_lib_dir(version: str = KAFKA_VERSION) -> Path:
    """The cache folder holding the broker's jars, fetched on first use."""
    lib = CACHE_DIR / "kafka" / version / "lib"
    marker = lib / ".complete"
    if marker.exists():
        return lib
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise ServiceError("Kafka needs Java and Maven: run `make deps` (apt-get install maven)")
    print(
        f"fetching Apache Kafka {version} from Maven Central into {lib} (once)",
        file=sys.stderr,
        flush=True,
    )
    lib.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(f"fetching Kafka {version} with Maven failed:\n{result.stdout[-3000:]}")
    marker.touch()
    return lib


class KafkaBroker(LocalServer):
    """One broker on 127.0.0.1; ``bootstrap`` is its address once started."""

    name = "Kafka"
    ready_when = "list topics"
    ready_timeout = 90.0
    failure_hints = _FAILURE_HINTS

    def __init__(self, port: int | None = None, *, auto_create_topics: bool = False) -> None:
        self.port = port or free_port()
        self.controller_port = free_port()
        self.auto_create_topics = auto_create_topics
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.run_dir: Path | None = None
        self.process: ManagedProcess | None = None

    def start(self) -> None:
        """Format the storage and start the broker (returns before it is ready)."""
        require_free_port("Kafka", self.port)
        require_free_port("Kafka controller", self.controller_port)
        lib = kafka_lib_dir()
        self.run_dir = make_run_dir("kafka")
        props = self.run_dir / "server.properties"
        props.write_text(
            TEMPLATE.read_text().format(
                broker_port=self.port,
                controller_port=self.controller_port,
                log_dir=self.run_dir / "data",
                auto_create_topics=str(self.auto_create_topics).lower(),
            )
        )
        classpath = f"{lib}/*"
        java = ["java", "-cp", classpath]
        env = {
            **os.environ,
            "KAFKA_LOG4J_OPTS": "",
        }
        cluster_id = (
            subprocess.run(
                [*java, "kafka.tools.StorageTool", "random-uuid"],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        log4j = self.run_dir / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.server.KafkaServer=INFO\n"
            "log4j.logger.kafka.server.KafkaRaftServer=INFO\n"
        )
        heap = os.environ.get("MHST_KAFKA_HEAP", "768m")
        self.process = ManagedProcess(
            "Kafka",
            [
                "java",
                f"-Xmx{heap}",
                f"-Xms{heap}",
                "-XX:+UseG1GC",
                "-XX:TieredStopAtLevel=1",
                f"-Dlog4j.configuration=file:{log4j}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(props),
            ],
            self.run_dir / "kafka.log",
            stop_signal=signal.SIGTERM,
        )
        self.process.start()

    def answers(self) -> bool:
        """Whether an admin call (list topics) succeeds."""
        # Connecting before the port opens only fills the log with aiokafka's errors.
        return port_in_use(self.port) and asyncio.run(_list_topics(self.bootstrap)) is not None

    def create_topics(self, topics: dict[str, int]) -> None:
        """Create topics (name -> partitions) that do not exist yet."""
        asyncio.run(_create_topics(self.bootstrap, topics))

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would."""
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        """Stop the broker and delete its data."""
        if self.process is not None:
            self.process.stop(timeout=30)
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)


async def _list_topics(bootstrap: str) -> list[str] | None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        return list(await admin.list_topics())
    except Exception:
        return None
    finally:
        await admin.close()


async def _create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(name, num_partitions=parts, replication_factor=1)
            for name, parts in topics.items()
            if name not in existing
        ]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()
