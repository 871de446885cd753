"""Image references read as container tools read them (core/image_ref.py, issue 16)."""

from __future__ import annotations

import pytest

from roost.core.image_ref import ImageRefError, parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(("given", "canonical", "familiar"), [
    ("nginx", "docker.io/library/nginx:latest", "nginx:latest"),
    ("nginx:alpine", "docker.io/library/nginx:alpine", "nginx:alpine"),
    ("docker.io/library/nginx:alpine", "docker.io/library/nginx:alpine", "nginx:alpine"),
    ("index.docker.io/team/app", "docker.io/team/app:latest", "team/app:latest"),
    ("team/app:v3", "docker.io/team/app:v3", "team/app:v3"),
    ("127.0.0.1:5000/team/app:v3", "127.0.0.1:5000/team/app:v3", "127.0.0.1:5000/team/app:v3"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app:latest"),
    ("ghcr.io/org/sub/app:1.2.3", "ghcr.io/org/sub/app:1.2.3", "ghcr.io/org/sub/app:1.2.3"),
    (f"nginx@{D}", f"docker.io/library/nginx@{D}", f"nginx@{D}"),
    (f"nginx:alpine@{D}", f"docker.io/library/nginx:alpine@{D}", f"nginx:alpine@{D}"),
    ("my_app.x-y__z:T_1.0-rc", "docker.io/library/my_app.x-y__z:T_1.0-rc", "my_app.x-y__z:T_1.0-rc"),
])
def test_references_are_normalised_as_everywhere(given: str, canonical: str, familiar: str) -> None:
    ref = parse(given)
    assert str(ref) == canonical and ref.familiar == familiar
    assert parse(str(ref)) == ref  # normal form is a fixed point
    assert ref.transport == f"docker://{canonical}"


@pytest.mark.parametrize("bad", [
    "", " nginx", "Nginx", "nginx:", "nginx:-bad", "nginx@sha256:abc", "nginx@md5:" + "a" * 32, "a//b",
    "app/", "/app", "a..b", "a_-b", "nginx:" + "t" * 129, "registry.io:99x/app", "x" * 256,
    "127.0.0.1:5000/App", "nginx:alpine:extra",
])
def test_bad_references_are_refused_with_the_reason(bad: str) -> None:
    with pytest.raises(ImageRefError, match=r"invalid image reference|not an image digest"):
        parse(bad)


def test_a_reference_is_pinned_to_the_digest_it_resolved_to() -> None:
    ref = parse("127.0.0.1:5000/team/app:v3")
    pinned = ref.pinned(D)
    assert str(pinned) == f"127.0.0.1:5000/team/app:v3@{D}" and pinned.tag == "v3"
    with pytest.raises(ImageRefError):
        ref.pinned("sha256:short")
