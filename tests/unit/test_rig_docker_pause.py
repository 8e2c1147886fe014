"""The docker broker's freeze: a transient "unable to freeze" from the engine is tried again,
any other refusal is not."""

from __future__ import annotations

import pytest

from helpers.rig.docker.compose import ComposeError
from helpers.rig.docker.kafka import DockerKafka

UNABLE = (
    "Error response from daemon: Cannot pause container a80c: OCI runtime pause failed: "
    "unable to freeze: unknown"
)


class FakeProject:
    """Stands in for the broker's ComposeProject: ``pause`` fails with the given errors first."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        self.calls: list[tuple[str, ...]] = []

    def state(self, service: str) -> dict:
        return {"Running": True}

    def run(self, *args: str, **kwargs):
        self.calls.append(args)
        if args[0] == "pause" and self.errors:
            raise ComposeError(f"`docker-compose pause kafka` failed (exit 1):\n{self.errors.pop(0)}")


def broker(project: FakeProject) -> DockerKafka:
    kafka = DockerKafka.__new__(DockerKafka)  # no engine: only the freeze is under test
    kafka.name, kafka._paused, kafka._project = "kafka-docker-test", False, project
    return kafka


def test_a_transient_unable_to_freeze_is_tried_again_until_the_broker_is_frozen():
    project = FakeProject([UNABLE, UNABLE])
    kafka = broker(project)
    kafka.pause()
    assert project.calls == [("pause", "kafka")] * 3
    kafka.resume()
    assert project.calls[-1] == ("unpause", "kafka")


def test_any_other_refusal_to_freeze_is_raised_at_once():
    project = FakeProject(["Error response from daemon: No such container: kafka"])
    with pytest.raises(ComposeError, match="No such container"):
        broker(project).pause()
    assert len(project.calls) == 1
