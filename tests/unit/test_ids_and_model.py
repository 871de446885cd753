import re

from roost.core.ids import is_machine_id, new_machine_id, new_machine_name, new_ulid
from roost.core.model import canonical_image_ref, parse_image_name


def test_machine_ids_are_14_lowercase_hex():
    ids = {new_machine_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_machine_id(i) for i in ids)


def test_ulids_are_26_chars_and_sort_by_time():
    a, b = new_ulid(1_700_000_000_000), new_ulid(1_700_000_000_001)
    assert len(a) == 26 and re.match(r"^[0-9A-HJKMNP-TV-Z]{26}$", a)
    assert a < b


def test_generated_names_look_like_flys():
    assert re.match(r"^[a-z]+-[a-z]+-\d{4}$", new_machine_name())


def test_image_names_registry_style():
    assert parse_image_name("ghcr.io/org/app:latest") == ("ghcr.io", "org/app", "latest")
    assert parse_image_name("nginx:alpine") == ("", "nginx", "alpine")
    assert parse_image_name("nginx") == ("", "nginx", "latest")
    assert parse_image_name("localhost:5000/app") == ("localhost:5000", "app", "latest")
    assert parse_image_name("registry.fly.io/app:deployment-01") == ("registry.fly.io", "app", "deployment-01")
    assert canonical_image_ref("nginx") == "nginx:latest"
