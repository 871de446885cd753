"""Running the system's network tools (`ip`, `nft`): bounded in time, their failure one clear error of the
caller's kind (the agent's NetworkError, the dev fleet's FleetNetError), never a hang or a traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


def run_tool(argv: Sequence[str], error: type[Exception], *, stdin: str | None = None, check: bool = True,
             timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run `argv`; raise `error` naming the command if it cannot start, times out or (with `check`) fails."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=stdin, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise error(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done
