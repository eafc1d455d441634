"""How long a session waits for its agent: the decisions, without sockets or clocks.

When a node's control channel drops, its sessions wait ``grace`` seconds for the agent to
come back; those whose agent does not return in time end. An agent that comes back and
lists the sessions it still runs (Hatchway's agent does; the official one does not) gets
the others ended at once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime


def gone_reason(target: str, grace: float) -> str:
    return f"The agent on {target} went away and did not come back within {grace:g} s."


def restarted_reason(target: str) -> str:
    return f"The agent on {target} came back without this session."


@dataclass
class AgentGrace:
    """The nodes whose agents are away: until when their sessions wait, and how long
    that wait was (for the reason given when it runs out)."""

    _away: dict[str, tuple[float, float]] = field(default_factory=dict)

    def away(self, target: str, now: float, seconds: float) -> float:
        """``target``'s control channel dropped at ``now``; its deadline. A second drop
        before it came back keeps the first deadline."""
        return self._away.setdefault(target, (now + seconds, seconds))[0]

    def forget(self, target: str) -> bool:
        """``target`` reconnected, or its sessions were ended: stop watching it. True if
        it was being watched."""
        return self._away.pop(target, None) is not None

    def is_away(self, target: str) -> bool:
        return target in self._away

    def remaining(self, target: str, now: float) -> float | None:
        """Seconds ``target``'s sessions still wait at ``now``; None when it is not away."""
        entry = self._away.get(target)
        return None if entry is None else max(0.0, entry[0] - now)

    def expired(self, now: float) -> list[tuple[str, float]]:
        """The nodes whose grace ran out by ``now``, with the grace they had. They stay
        here until ``forget``: ending their sessions may fail, and then it is tried again."""
        return [
            (target, seconds)
            for target, (deadline, seconds) in self._away.items()
            if deadline <= now
        ]

    def next_deadline(self) -> float | None:
        return min((deadline for deadline, _ in self._away.values()), default=None)


def sessions_it_lost(
    active: Mapping[str, datetime], live: Collection[str], opened: datetime
) -> list[str]:
    """Of a node's ``active`` sessions (id -> start time), those its agent no longer runs:
    not in the ``live`` list it sent when its control channel opened at ``opened``.
    Sessions started after that moment may not be in the list yet, so they stay."""
    return sorted(
        session_id
        for session_id, started in active.items()
        if session_id not in live and started < opened
    )


def unattended(nodes: Mapping[str, str | None]) -> list[str]:
    """Of the nodes with open sessions (node -> the server node holding its control
    channel, or None), those whose agent no server node hears from."""
    return sorted(node for node, held_by in nodes.items() if held_by is None)
