"""Check a fenced worker's shared log: every write must carry a token at least as new as any before it.

    python3 check_log.py /tmp/roost-fenced/shared.log
"""

import sys


def stale_writes(path: str) -> list[str]:
    highest = 0
    stale = []
    with open(path) as fh:
        for line in fh:
            token = int(line.split()[0])
            if token < highest:
                stale.append(line.strip())
            highest = max(highest, token)
    return stale


if __name__ == "__main__":
    bad = stale_writes(sys.argv[1])
    print(f"{len(bad)} writes with a stale token")
    sys.exit(1 if bad else 0)
