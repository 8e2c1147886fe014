"""The jars of the rig's local Kafka broker, resolved once from Maven Central into the cache.

The broker runs straight from its Maven artefacts (no Kafka distribution, no Docker). The pom
in ``helpers/rig/kafka/`` pins them; ``mvn dependency:copy-dependencies`` copies them into a
temp dir next to the cache dir, which is then renamed into place, so an interrupted resolve
never leaves a half-filled cache. A marker file says the copy is complete.

``python -m helpers.rig.kafka_jars`` resolves (if needed) and prints the jar directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers.rig.paths import CACHE_DIR

KAFKA_VERSION = "4.1.1"
KAFKA_DIR = Path(__file__).resolve().parent / "kafka"
POM = KAFKA_DIR / "pom.xml"
LOG4J_CONFIG = KAFKA_DIR / "log4j2.properties"
JAR_DIR = CACHE_DIR / f"kafka-{KAFKA_VERSION}"
MARKER = ".complete"
RESOLVE_TIMEOUT_S = 600


class KafkaJarsError(RuntimeError):
    """The broker's jars cannot be resolved (java or mvn missing, Maven failed)."""


def require_tool(name: str) -> str:
    """Path of a command on PATH, or a clear error naming what to install."""
    path = shutil.which(name)
    if path is None:
        raise KafkaJarsError(
            f"'{name}' not found on PATH: the local Kafka broker needs a Java 17+ runtime "
            "(java) and Maven (mvn), e.g. `apt-get install openjdk-17-jre-headless maven`"
        )
    return path


def _is_complete(jar_dir: Path) -> bool:
    return (jar_dir / MARKER).is_file() and any(jar_dir.glob("kafka_2.13-*.jar"))


def resolve(jar_dir: Path = JAR_DIR) -> Path:
    """The directory holding every broker jar; runs Maven once if it is not there yet."""
    if _is_complete(jar_dir):
        return jar_dir
    require_tool("java")
    mvn = require_tool("mvn")
    jar_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{jar_dir.name}-", dir=jar_dir.parent))
    try:
        argv = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise KafkaJarsError(f"Maven did not finish in {RESOLVE_TIMEOUT_S}s: {argv}") from exc
        if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            output = (done.stdout + done.stderr).strip()[-4000:]
            raise KafkaJarsError(
                f"resolving Kafka {KAFKA_VERSION} jars failed (exit {done.returncode}): "
                f"{' '.join(argv)}\n{output}"
            )
        (staging / MARKER).write_text(f"kafka {KAFKA_VERSION} from {POM}\n")
        try:
            os.rename(staging, jar_dir)
        except OSError:
            # Another process finished first (target exists and is not empty): use theirs.
            if not _is_complete(jar_dir):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return jar_dir


def classpath(jar_dir: Path | None = None) -> str:
    """The java -cp value for the broker and its tools."""
    directory = resolve() if jar_dir is None else resolve(jar_dir)
    return os.pathsep.join(str(p) for p in sorted(directory.glob("*.jar")))


def main() -> int:
    try:
        print(resolve())
    except KafkaJarsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
