"""The spec a host agent runs is checked again at the host (issue 13: one typed spec for server and agent):
ids that would name files outside the agent's tree, volume paths that climb out of the machine, and
environment values a process cannot be given are refused with a 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from roost.core.agent_spec import AgentSpec, VolumeSpec
from roost.core.errors import RoostError

DIGEST = "sha256:" + "ab" * 32


def raw(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "0123456789abcd", "app": "web", "instance_id": "01J", "region": "ams", "private_ip": "127.0.9.1",
        "ports": {"8080": 20001}, "config": {"image": "web:v1", "init": {"cmd": ["serve"]}},
        "image": {"ref": "web:v1", "digest": DIGEST, "cmd": ["run"]}, "env": {"A": "1"},
        "volume": {"id": "vol_1abc", "path": "/data"}, "stop_signal": 15, "stop_timeout": 10,
    }
    body.update(changes)
    return body


def test_a_spec_round_trips_through_json() -> None:
    spec = AgentSpec.from_json(raw())
    assert spec.volume == VolumeSpec("vol_1abc", "/data") and spec.ports == {"8080": 20001}
    assert AgentSpec.from_json(spec.to_json()) == spec
    assert spec.argv() == ["serve"], "init.cmd replaces the image's command"
    assert AgentSpec.from_json(raw(config={"image": "web:v1"})).argv() == ["run"]


@pytest.mark.parametrize("changes, field", [
    ({"id": ".."}, "spec.id"),
    ({"id": "a/b"}, "spec.id"),
    ({"volume": {"id": "vol_1", "path": "/../../../etc"}}, "spec.volume.path"),
    ({"volume": {"id": "vol_1", "path": "data"}}, "spec.volume.path"),
    ({"volume": {"id": "../x", "path": "/data"}}, "spec.volume.id"),
    ({"env": {"A=B": "1"}}, "spec.env"),
    ({"env": {"A": "x\x00y"}}, "spec.env.A"),
    ({"env": {"A": 1}}, "spec.env.A"),
    ({"image": {"ref": "x", "digest": "sha256:../../x"}}, "spec.image.digest"),
    ({"ports": {"http": 1}}, "spec.ports"),
    ({"ports": {"80": 70000}}, "spec.ports.80"),
    ({"stop_timeout": 10**30}, "spec.stop_timeout"),
    ({"stop_signal": True}, "spec.stop_signal"),
    ({"config": []}, "spec.config"),
])
def test_a_bad_spec_is_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(RoostError) as err:
        AgentSpec.from_json(raw(**changes))
    assert err.value.status == 400 and err.value.message.startswith(field)
