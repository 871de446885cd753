"""Golden tests over the corpus of 60 real fly.toml files: each loads without a crash (or fails with a clear
ConfigError), and its per-group machine configs and warnings match the reviewed golden files.

Regenerate after a deliberate change with: ROOST_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_flytoml_corpus.py
and review the diff (`git diff tests/data/flytoml-golden`)."""

import json
import os
from pathlib import Path

import pytest

from roost.config.flytoml import ConfigError, load_text
from roost.config.machines import machine_config, process_groups

DATA = Path(__file__).resolve().parents[1] / "data"
FILES = sorted((DATA / "flytoml").glob("*.toml"))


def translate(path: Path) -> dict:
    try:
        cfg = load_text(path.read_text(), path.name)
        groups = {g: machine_config(cfg, g, image="registry.roost/app:deploy") for g in process_groups(cfg)}
    except ConfigError as exc:
        return {"error": exc.message}
    return {"app": cfg.app, "primary_region": cfg.primary_region, "warnings": cfg.warnings, "groups": groups}


def test_the_corpus_is_all_there():
    assert len(FILES) == 60


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_corpus_file_translates_as_reviewed(path):
    got = json.loads(json.dumps(translate(path)))
    golden = DATA / "flytoml-golden" / f"{path.stem}.json"
    if os.environ.get("ROOST_UPDATE_GOLDEN"):
        golden.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    assert got == json.loads(golden.read_text())
    if "error" not in got:
        for config in got["groups"].values():
            assert config["metadata"]["fly_platform_version"] == "v2"
            assert config["env"]["FLY_PROCESS_GROUP"] == config["metadata"]["fly_process_group"]
