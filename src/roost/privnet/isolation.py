"""Which machines may talk to which on the private network: only machines of the same org (Fly's 6PN rule).

A host's machines hang off its bridge; every packet between two machines (on this host, or one of them on
another host through the host's uplink) crosses that bridge, so one nftables table of the bridge family there
decides: a packet whose source and destination are both machine addresses passes only if both belong to the
same org. Each org is a set of addresses and a chain; a verdict map sends a packet to its source's org chain,
which accepts it only if the destination is in the same set. An address the directory does not know (a machine
the feed has not described yet, or an address two orgs claim while one is being destroyed) is in no set, so
its packets to other machines are dropped: the rule fails closed. Everything else passes: the host's own
gateway address (the `.internal` resolver, checks) and the fleet's edges, which are not machine addresses.

Pure: it writes the ruleset as text for `nft -f` (agent/netns.py applies it atomically: the table is deleted
and written again in one transaction).
"""

from __future__ import annotations

import ipaddress

from roost.privnet.names import Directory

TABLE = "roost_private_net"


def org_members(directory: Directory) -> dict[str, list[str]]:
    """Each org's machine addresses (IPv4), sorted; an address claimed by machines of two orgs is left out."""
    owner: dict[str, str | None] = {}
    for m in directory.machines.values():
        org = directory.apps.get(m.app)
        if org is None or not _ipv4(m.address):
            continue
        owner[m.address] = org if owner.get(m.address, org) == org else None
    members: dict[str, list[str]] = {}
    for address, org in owner.items():
        if org is not None:
            members.setdefault(org, []).append(address)
    return {org: sorted(addresses, key=ipaddress.IPv4Address) for org, addresses in sorted(members.items())}


def port_name(machine_id: str) -> str:
    """A machine's port on its host's bridge (interface names hold 15 characters)."""
    return f"v{machine_id}"[:15]


def _ipv4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


def ruleset(machine_range: str, gateway: str, members: dict[str, list[str]], ports: dict[str, str],
            uplink: str) -> str:
    """The nft script for one host's bridge; `ports` maps each machine's bridge port to its address (what the
    agent attached, not what the feed says: a machine is reachable before the feed describes it).

    - A machine's port carries IPv4 and ARP only (no IPv6 link-local path around the rules), from the
      machine's own address only (no spoofing a neighbour or the gateway).
    - Packets between addresses of `machine_range` (the host's subnet, or the whole private network) pass only
      within an org; the gateway's own traffic (from the host's uplink port) passes."""
    net = ipaddress.IPv4Network(machine_range)
    gw = ipaddress.IPv4Address(gateway)
    lines = [f"table bridge {TABLE}", f"delete table bridge {TABLE}", f"table bridge {TABLE} {{"]
    verdicts = []
    for index, (_org, addresses) in enumerate(members.items()):
        inside = [a for a in addresses if ipaddress.IPv4Address(a) in net and ipaddress.IPv4Address(a) != gw]
        if not inside:
            continue
        name = f"org{index}"
        lines.append(f"  set {name} {{ type ipv4_addr; elements = {{ {', '.join(inside)} }}; }}")
        lines.append(f"  chain {name} {{ ip daddr @{name} accept; drop; }}")
        verdicts += [f"{a} : jump {name}" for a in inside]
    if verdicts:
        lines.append(f"  map org_of {{ type ipv4_addr : verdict; elements = {{ {', '.join(verdicts)} }}; }}")
    bound = [f'"{port}" . {address}' for port, address in sorted(ports.items())]
    if bound:
        lines.append(f"  set bound {{ type ifname . ipv4_addr; elements = {{ {', '.join(bound)} }}; }}")
    lines += ["  chain forward {",
              "    type filter hook forward priority 0; policy accept;",
              f'    iifname "{uplink}" ip saddr {gw} accept',
              f'    iifname != "{uplink}" meta protocol != {{ ip, arp }} drop',
              f'    iifname != "{uplink}" meta protocol ip ' +
              ("iifname . ip saddr != @bound drop" if bound else "drop"),
              f'    iifname != "{uplink}" meta protocol arp ' +
              ("iifname . arp saddr ip != @bound drop" if bound else "drop"),
              f"    ip daddr {gw} accept"]
    if verdicts:
        lines.append(f"    ip saddr {net} ip daddr {net} ip saddr vmap @org_of")
    lines += [f"    ip saddr {net} ip daddr {net} drop", "  }", "}"]
    return "\n".join(lines) + "\n"


def removal() -> str:
    """The nft script that removes the table (and nothing else)."""
    return f"table bridge {TABLE}\ndelete table bridge {TABLE}\n"
