"""Whether this server leads the control plane, judged from the leases the database hands out (pure: the
local clock is an input, so it is unit-tested on a virtual one).

The database is the authority: it grants a lease for `ttl` seconds by its own clock and refuses any commit
made under a term that is over. This judgement only keeps a leader from *acting* on a belief that may be
stale: calling agents or starting a standby after its lease may have lapsed. So a leader counts its lease
from the moment it *asked* for it (earlier than the database granted it), and stops `margin` seconds before
even that conservative end, unless a renewal came back in time.
"""

from __future__ import annotations

from dataclasses import dataclass

NAME = "control-plane"


@dataclass(frozen=True)
class Fence:
    """A leader's claim on a commit: it lands only while the lease `name` names `holder` in `term`."""

    holder: str
    term: int
    name: str = "control-plane"


@dataclass(frozen=True)
class Lease:
    """A leadership lease as the database holds it, times by the database's clock."""

    name: str
    holder: str  # "" when nobody ever held it
    term: int
    expires_at: float
    now: float  # the database's clock when this was read

    @property
    def live(self) -> bool:
        return bool(self.holder) and self.expires_at > self.now

    def held_by(self, holder: str) -> bool:
        return self.live and self.holder == holder


@dataclass(frozen=True)
class LeaderConfig:
    ttl: float = 1.5  # a lease lasts this long unless renewed: the longest a dead leader blocks a new one
    renew_every: float = 0.3  # how often the leader renews (and a follower tries to take a lapsed lease)
    margin: float = 0.3  # a leader stops deciding this long before its lease could lapse

    def __post_init__(self) -> None:
        if not (self.renew_every > 0 and self.margin >= 0 and self.renew_every + self.margin < self.ttl):
            raise ValueError("need 0 < renew_every, 0 <= margin and renew_every + margin < ttl")


@dataclass(frozen=True)
class Change:
    """A change of role: `leads` in `term` from now on (or no longer)."""

    leads: bool
    term: int
    leader: str  # who leads now, as far as the lease says ("" when nobody does)


class Leadership:
    def __init__(self, me: str, config: LeaderConfig | None = None) -> None:
        self.me = me
        self.config = config or LeaderConfig()
        self.term = 0  # the term this server leads in (0: it does not)
        self.valid_until = float("-inf")  # local clock: act as leader only before this
        self.leader = ""  # who the last lease named

    def leads(self, now: float) -> bool:
        return self.term > 0 and now < self.valid_until

    def fence(self) -> Fence:
        """What every decision of this leader carries into its commit."""
        return Fence(self.me, self.term, NAME)

    def observe(self, lease: Lease, asked_at: float) -> Change | None:
        """The lease the database answered an acquire sent at local time `asked_at` with; a Change when the
        role changed."""
        was = self.term
        self.leader = lease.holder if lease.live else ""
        if lease.held_by(self.me):
            left = lease.expires_at - lease.now  # by the database's clock, from when it answered
            self.valid_until = asked_at + left - self.config.margin
            self.term = lease.term
        else:
            self.term = 0
            self.valid_until = float("-inf")
        if self.term != was:
            return Change(self.term > 0, self.term, self.leader)
        return None

    def forget(self) -> None:
        """Taking office failed (the catch-up before it): not leading; the next lease observed tries again."""
        self.term = 0
        self.valid_until = float("-inf")

    def lapse(self, now: float) -> Change | None:
        """No renewal came back in time (the database is slow or unreachable): at `valid_until` this server
        stops leading, whatever the lease may still say."""
        if self.term > 0 and now >= self.valid_until:
            self.term = 0
            return Change(False, 0, "")
        return None
