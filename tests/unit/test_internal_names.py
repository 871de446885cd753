"""The `.internal` names (issue 19), from a directory fed as the watch feed's names view feeds it."""

from __future__ import annotations

from roost.privnet.names import REFUSED, Directory, names_view


def machine(mid: str, app: str, region: str, address: str, state: str = "started", group: str = "app") -> dict:
    return {"kind": "machine", "key": mid, "object": names_view("machine", {
        "id": mid, "app": app, "region": region, "state": state, "private_ip": address, "host_id": "h",
        "config": {"metadata": {"fly_process_group": group}, "env": {"SECRET": "x"}}})}


def app(name: str, org: str = "personal") -> dict:
    return {"kind": "app", "key": name, "object": names_view("app", {"name": name, "organization": {"slug": org}})}


def fleet() -> Directory:
    d = Directory()
    d.reset([app("db"), app("web"), app("other", org="acme"),
             machine("m-syd", "db", "syd", "10.201.1.2"), machine("m-ams", "db", "ams", "10.201.2.2"),
             machine("m-ewr", "db", "ewr", "10.201.3.2", group="replica"),
             machine("m-off", "db", "ewr", "10.201.3.3", state="stopped"),
             machine("w-ewr", "web", "ewr", "10.201.3.9"), machine("o-1", "other", "ewr", "10.202.3.2")], 5)
    return d


def values(d: Directory, name: str, qtype: str = "A", asker: str = "10.201.3.9") -> list[str]:
    who = d.asker(asker)
    assert who is not None
    a = d.answer(name, qtype, who)
    assert a.rcode == "NOERROR", a
    return sorted(r.value for r in a.records)


def test_the_names_view_carries_no_config():
    view = machine("m", "db", "syd", "10.0.0.2")["object"]
    assert "config" not in view and "env" not in str(view) and view["group"] == "app"


def test_every_name_fly_answers():
    d = fleet()
    assert values(d, "db.internal") == ["10.201.1.2", "10.201.2.2", "10.201.3.2"]  # started only
    assert values(d, "syd.db.internal") == ["10.201.1.2"]
    assert values(d, "m-ams.vm.db.internal.") == ["10.201.2.2"]
    assert values(d, "replica.process.db.internal") == ["10.201.3.2"]
    assert values(d, "top1.nearest.of.db.internal") == ["10.201.3.2"]  # the asker is in ewr
    assert values(d, "top2.nearest.of.db.internal") == ["10.201.2.2", "10.201.3.2"]  # ams is nearer than syd
    assert values(d, "_apps.internal", "TXT") == ["db,web"]
    assert values(d, "regions.db.internal", "TXT") == ["ams,ewr,syd"]
    assert values(d, "vms.db.internal", "TXT") == ["m-ams ams,m-ewr ewr,m-syd syd"]
    assert values(d, "DB.Internal") == values(d, "db.internal")
    assert values(d, "db.internal", "AAAA") == []  # IPv4 addresses: the name exists, no AAAA


def test_another_orgs_app_does_not_exist_and_other_names_are_refused():
    d = fleet()
    who = d.asker("10.201.3.9")
    assert who is not None
    assert d.answer("other.internal", "A", who).rcode == "NXDOMAIN"
    assert d.answer("nope.internal", "A", who).rcode == "NXDOMAIN"
    assert d.answer("x.y.z.db.internal", "A", who).rcode == "NXDOMAIN"
    assert d.answer("example.com", "A", who) == REFUSED
    assert d.answer("a..internal", "A", who) == REFUSED
    outsider = d.asker("10.202.3.2")
    assert outsider is not None and values(d, "_apps.internal", "TXT", "10.202.3.2") == ["other"]
    assert d.asker("10.9.9.9") is None  # not a machine: nobody to answer for


def test_a_stopped_or_destroyed_machine_leaves_its_names_at_once():
    d = fleet()
    d.apply({"op": "put", "rev": 6, **machine("m-syd", "db", "syd", "10.201.1.2", state="stopped")})
    assert values(d, "syd.db.internal") == []
    d.apply({"op": "put", "rev": 7, **machine("m-ams", "db", "ams", "10.201.2.2", state="destroyed")})
    d.apply({"op": "delete", "rev": 8, "kind": "machine", "key": "m-ewr"})
    assert values(d, "db.internal") == [] and d.revision == 8
    assert "db" not in d.by_app or all(not m.started for m in d.by_app["db"].values())
    d.apply({"op": "delete", "rev": 9, "kind": "app", "key": "db"})
    who = d.asker("10.201.3.9")
    assert who is not None and d.answer("db.internal", "A", who).rcode == "NXDOMAIN"
