"""`roost config validate` lists every problem of a fly.toml in one run, each with its line (issue 21)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roost.cli.main import app
from roost.cli.output import cli_command
from roost.config.flytoml import ConfigError, load_text
from roost.config.locate import locate

BROKEN = '''app = "x"
primary_region = "zzz"

[http_service]
  internal_port = 99999
  force_https = true

[[services]]
  internal_port = 8080
  protocol = "tcp"

[[services]]
  internal_port = 9090
  protocol = "sctp"

[checks.alive]
  type = "grpc"

[[restart]]
  policy = "sometimes"
'''


def run(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("ROOST_API_URL", "http://127.0.0.1:9")  # no fleet: Fly's region codes alone
    monkeypatch.setenv("ROOST_API_TOKEN", "x")
    with CliRunner().isolation() as (_, _, output):
        try:
            cli_command(app).main(args=args, prog_name="roost")
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        sys.stdout.flush()
        sys.stderr.flush()
        return code, output.getvalue().decode()


def test_every_problem_in_one_run_with_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fly.toml").write_text(BROKEN)
    code, out = run(["config", "validate"], tmp_path, monkeypatch)
    assert code == 1
    lines = [line for line in out.splitlines() if "fly.toml:" in line]
    assert [line.split("fly.toml:")[1].split(":")[0] for line in lines] == ["2", "5", "14", "17", "20"], out
    assert "unknown region 'zzz'" in lines[0] and "services[1].protocol" in lines[2]
    assert "Error: 5 problems" in out
    code, out = run(["config", "validate", "--json"], tmp_path, monkeypatch)
    report = json.loads(out)
    assert code == 1 and report["valid"] is False and len(report["problems"]) == 5
    assert report["problems"][3] == {"line": 17, "message": "checks.alive.type: missing or invalid check type, "
                                                            "must be 'http' or 'tcp'"}


def test_a_valid_file_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fly.toml").write_text('app = "x"\nprimary_region = "ams"\n[http_service]\ninternal_port = 8080\n')
    code, out = run(["config", "validate"], tmp_path, monkeypatch)
    assert code == 0 and "is valid" in out and "process groups: app" in out


def test_a_deploy_still_fails_on_the_first_problem_and_counts_the_rest() -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(BROKEN)  # no region list: the server judges regions at deploy
    assert caught.value.message.startswith("http_service.internal_port: must be between 1 and 65535")
    assert "(and 3 more problems" in caught.value.message and len(caught.value.problems) == 4


@pytest.mark.parametrize(("message", "line"), [
    ("primary_region: x", 2), ("http_service.internal_port: x", 5), ("services[0].protocol: x", 10),
    ("services[1].protocol: x", 14), ("services[1]: x", 12), ("checks.alive.type: x", 17),
    ("restart[0].policy: x", 20), ("deploy.strategy: x", None), ("not a path", None)])
def test_locate_finds_the_key_line(message: str, line: int | None) -> None:
    assert locate(BROKEN, message) == line
