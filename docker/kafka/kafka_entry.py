"""Start the rig's single-node KRaft broker inside its container.

The configuration is made on the host by helpers/rig/broker_config.py (the same one the local
backend's broker runs) and mounted at /etc/kafka-rig: ``server.properties`` and
``format-args`` (the StorageTool arguments, one a line, including the SCRAM users, which
KRaft needs in its metadata before the first start). The data dir is formatted once, so a
restarted container keeps its topics; then this process becomes the broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONF = Path(os.environ.get("KAFKA_RIG_CONF", "/etc/kafka-rig"))
LIBS = "/opt/kafka/libs/*"
LOG4J = "/opt/kafka/log4j2.properties"


def java(jvm_opts: str, main_class: str, args: list[str]) -> list[str]:
    return ["java", *jvm_opts.split(), f"-Dlog4j2.configurationFile={LOG4J}", "-cp", LIBS,
            main_class, *args]


def log_dirs(properties: Path) -> list[Path]:
    for line in properties.read_text().splitlines():
        if line.startswith("log.dirs="):
            return [Path(p) for p in line.split("=", 1)[1].split(",")]
    return []


def main() -> int:
    properties = CONF / "server.properties"
    if not properties.is_file():
        print(f"kafka_entry: no {properties}: mount the config made by "
              "`python -m helpers.rig.broker_config properties`", file=sys.stderr)
        return 2
    if not all((d / "meta.properties").is_file() for d in log_dirs(properties)):
        args = (CONF / "format-args").read_text().splitlines()
        tool_opts = os.environ.get("KAFKA_TOOL_JVM_OPTS", "-Xmx256m -XX:+UseSerialGC")
        subprocess.run(java(tool_opts, "kafka.tools.StorageTool", args), check=True)
    sys.stdout.flush()
    argv = java(os.environ.get("KAFKA_JVM_OPTS", "-Xmx512m"), "kafka.Kafka", [str(properties)])
    os.execvp(argv[0], argv)
    return 1


if __name__ == "__main__":
    sys.exit(main())
