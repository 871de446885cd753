"""The control plane's side of the WireGuard mesh: a host's key and port are checked at registration, and a
heartbeat reply carries the mesh only while the host has not applied this one."""

from __future__ import annotations

import base64

import pytest

from roost.core.errors import RoostError
from tests.unit.test_failover_clock import World

KEY = base64.b64encode(b"k" * 32).decode()


def host(i: int, **more: object) -> dict[str, object]:
    return {"id": f"m{i}", "region": "ams", "address": f"127.0.8.{i}", "agent_url": f"http://m{i}", "cpus": 2,
            "memory_mb": 2048, **more}


@pytest.mark.parametrize(("wireguard", "machine_net", "says"), [
    ({"public_key": "nope", "port": 51820}, "10.201.1.0/24", "wireguard.public_key"),
    ({"public_key": KEY, "port": 70000}, "10.201.1.0/24", "wireguard.port"),
    ({"public_key": KEY, "port": True}, "10.201.1.0/24", "wireguard.port"),
    ("yes", "10.201.1.0/24", "wireguard: expected"),
    ({"public_key": KEY, "port": 51820}, "", "machine subnet"),
])
async def test_a_bad_wireguard_registration_is_a_clear_400_and_registers_nothing(
        wireguard: object, machine_net: str, says: str) -> None:
    world = World()
    with pytest.raises(RoostError) as refused:
        await world.hosts.register(host(1, wireguard=wireguard, machine_net=machine_net))
    assert refused.value.status == 400 and says in refused.value.message
    assert "m1" not in world.state.hosts


async def test_the_mesh_goes_out_until_the_host_says_it_has_it_and_again_when_it_changes() -> None:
    world = World()
    await world.hosts.register(host(1, wireguard={"public_key": KEY, "port": 51820}, machine_net="10.201.1.0/24"))
    await world.hosts.register(host(2, wireguard={"public_key": KEY, "port": 51821}, machine_net="10.201.2.0/24"))
    await world.hosts.register(host(3))  # no mesh: its beats carry none
    first = (await world.hosts.heartbeat("m1", {}))["mesh"]
    assert [p["endpoint"] for p in first["peers"]] == ["127.0.8.1:51820", "127.0.8.2:51821"]
    assert "mesh" not in await world.hosts.heartbeat("m1", {"mesh": first["digest"]})
    assert "mesh" not in await world.hosts.heartbeat("m3", {})
    await world.hosts.register(host(4, wireguard={"public_key": KEY, "port": 51820}, machine_net="10.201.4.0/24"))
    again = (await world.hosts.heartbeat("m1", {"mesh": first["digest"]}))["mesh"]
    assert again["digest"] != first["digest"] and len(again["peers"]) == 3
