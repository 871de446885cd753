"""`scale count`: flyctl's convergence (internal/command/scale/count_machines.go, convergeGroupCounts).

N is the target total over the listed regions only; machines elsewhere are neither counted nor touched.
With a per-region maximum, regions above it are first trimmed to it. Removals go round-robin from the
second region, wrapping to the first last (it tends to be the primary), and do not rebalance — as flyctl.

Additions differ from flyctl in one case, on purpose: each new machine goes to the listed region with the
fewest machines (ties in list order). From an empty or even start that is exactly flyctl's round-robin
from the first region (3 over scl,iad -> 2/1; 20 over ams,ewr,gig -> 7/7/6), but where a region already
leads, flyctl keeps piling machines there (2 in ams, `scale count 6 --region ams,ewr,syd` -> 4/1/1) while
this fills the others first (-> 2/2/2), which is what people asking for six machines in three regions mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from roost.core.errors import bad_request


@dataclass(frozen=True)
class RegionChange:
    region: str
    current: int
    delta: int

    @property
    def target(self) -> int:
        return self.current + self.delta


def converge(total: int, regions: Sequence[str], current: Mapping[str, int], max_per_region: int = -1,
             fill_emptiest: bool = True) -> list[RegionChange]:
    """`fill_emptiest=False` adds exactly as flyctl does, round-robin from the first region: what a scale
    without --region uses, with the primary region first, so that new machines land there first."""
    if total < 0:
        raise bad_request("count must not be negative")
    if not regions:
        raise bad_request("no regions to scale in")
    if len(set(regions)) != len(regions):
        raise bad_request("a region is listed twice")
    delta = {r: 0 for r in regions}
    have = {r: int(current.get(r, 0)) for r in regions}
    if max_per_region >= 0:
        if len(regions) * max_per_region < total:
            raise bad_request(f"cannot place {total} machines in {len(regions)} regions with at most "
                              f"{max_per_region} per region; raise --max-per-region or list more regions")
        for r in regions:
            if have[r] > max_per_region:
                delta[r] = max_per_region - have[r]
    diff = total - sum(have[r] + delta[r] for r in regions)
    order = {r: i for i, r in enumerate(regions)}
    turn = 0
    while diff > 0:
        open_regions = [r for r in regions if max_per_region < 0 or have[r] + delta[r] < max_per_region]
        if fill_emptiest:
            r = min(open_regions, key=lambda x: (have[x] + delta[x], order[x]))
        else:
            r = open_regions[turn % len(open_regions)]
            turn += 1
        delta[r] += 1
        diff -= 1
    i = 1
    while diff < 0:
        r = regions[i % len(regions)]
        if have[r] + delta[r] > 0:
            delta[r] -= 1
            diff += 1
        i += 1
    return [RegionChange(r, have[r], delta[r]) for r in regions]


def parse_count(text: str, current_total: int) -> int:
    """'3' absolute, '+2' / '-1' relative to the group's current size."""
    value = text.strip()
    try:
        target = current_total + int(value) if value.startswith(("+", "-")) else int(value)
    except ValueError:
        raise bad_request(f"invalid count {text!r}: a number, or +N / -N") from None
    if target < 0:
        raise bad_request(f"count {text!r} would leave {target} machines")
    return target
