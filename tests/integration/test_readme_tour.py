"""Issue 21: the README's tour, run as a newcomer runs it, command by command, on a fresh local fleet.

The commands are read from the README itself, so the README cannot drift: a command that fails fails this
test, and a command with no expectation here fails it too (add one when the tour grows). Only what cannot run
unattended is adapted, and each adaptation is listed in ADAPTED: `ID` becomes a machine id, the follow of
`roost logs -f` is cut after a few seconds, the console runs one command, and the drills run shorter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PORTS = (4280, 4399, 4400, 4401, 4402)  # the fleet's documented defaults: server, anycast entry, edges

# What each command must print (stdout and stderr together), matched against the command as written.
EXPECT: list[tuple[str, list[str]]] = [
    (r"^export PATH=", []),
    (r"^roost dev up", ["ams-1", "syd-2"]),
    (r"^roost image push examples/hello", ["hello:v1"]),
    (r"^roost apps create hello", ["hello"]),
    (r"^roost machine run hello:v1", ["started"]),
    (r"^curl http://hello\.localhost:4400/", ["machine"]),
    (r"^roost machine list -a hello", ["started"]),
    (r"^roost machine suspend ID", ["suspended", "started"]),
    (r"^roost machine stop ID", ["stopped"]),
    (r"^roost logs -a hello -f", ["listening on"]),
    (r"^roost cost -a hello", ["hello"]),
    (r"^roost ssh console -a hello", ["tour-console-ok"]),
    (r"^cd examples/stack", ["Deployed v1 of stack", "web", "worker", "db"]),
    (r"^roost scale count 6", ["Scaled stack"]),
    (r"^roost drill kill-host -a hello", ["kill-host"]),
    (r"^roost drill kill-region -a stack", ["kill-region"]),
    (r"^roost dev down", []),
]
# Only what a test cannot do as a person at a terminal does.
ADAPTED = {
    "roost logs -a hello -f": "followed for 4 s, then interrupted (Ctrl-C)",
    "roost ssh console -a hello": "runs one command instead of an interactive shell",
    "roost drill": "runs 8 s (--duration 8s --at 2s --heal-after 3s) instead of 30 s",
}


def tour_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## A tour", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.strip().splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        if command:
            commands.append(command)
    return commands


def expectation(command: str) -> list[str]:
    for pattern, wanted in EXPECT:
        if re.search(pattern, command):
            return wanted
    raise AssertionError(f"the README's tour has a command this test does not know: {command!r}; "
                         "add what it should print to EXPECT")


def test_every_tour_command_has_an_expectation() -> None:
    commands = tour_commands()
    assert len(commands) >= 15 and commands[1].startswith("roost dev up") and commands[-1] == "roost dev down"
    for command in commands:
        expectation(command)


def _busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    busy = [p for p in PORTS if _busy(p)]
    if busy:
        pytest.skip(f"the tour's documented ports are in use here: {busy}")
    work = tmp_path / "tour"
    work.mkdir()
    shutil.copytree(ROOT / "examples", work / "examples")
    (work / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROOST_API", "ROOST_CA", "FLY_"))}
    env["ROOST_DEV_DIR"] = str(tmp_path / "dev")
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env['PATH']}"
    machine_id = ""
    try:
        for command in tour_commands():
            wanted = expectation(command)
            if command.startswith("export "):
                continue  # done above, for every command
            if "ID" in command.split():
                listed = _run("roost machine list -a hello --json", work, env, 30).stdout
                machine_id = next(m["id"] for m in json.loads(listed) if m["state"] == "started")
                command = re.sub(r"\bID\b", machine_id, command)
            if command.startswith("roost drill"):
                command += " --duration 8s --at 2s --heal-after 3s"
            if command.startswith("roost ssh console"):
                command += " --command 'echo tour-console-ok'"
            timeout = 300 if command.startswith(("roost dev up", "cd examples", "roost scale", "roost drill")) \
                else 60
            if command.startswith("roost logs") and " -f" in command:
                result = _follow(command, work, env, 4)
            else:
                result = _run(command, work, env, timeout)
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"{command!r} failed ({result.returncode}):\n{output[-3000:]}"
            assert "Traceback" not in output, f"{command!r}:\n{output[-3000:]}"
            for text in wanted:
                assert text in output, f"{command!r} did not print {text!r}:\n{output[-3000:]}"
    finally:
        subprocess.run(["roost", "dev", "down"], cwd=work, env=env, capture_output=True, timeout=120)
    assert (work / "drill.html").exists(), "the kill-region drill wrote its report"


def _run(command: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _follow(command: str, cwd: Path, env: dict[str, str], seconds: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(2)  # Ctrl-C
        out, err = proc.communicate(timeout=10)
    code = 0 if proc.returncode in (0, 130, -2) else proc.returncode
    return subprocess.CompletedProcess(command, code, out, err)
