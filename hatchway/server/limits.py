"""When a session must end on its own: the document's idle timeout and maximum duration
(agent.md §4.6), and the join deadline of a client that never opened its data channel.

Pure decisions: no sockets, no clock. The caller passes ``now`` (seconds on one clock,
the wall clock in the server, so that times kept in the database still count after a
restart) and acts on what ``expired`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass

IDLE_MESSAGE = "Your session timed out due to inactivity and has been terminated."
MAX_DURATION_MESSAGE = "Your session has reached its maximum duration and has been terminated."
JOIN_MESSAGE = (
    "The client did not open the session's data channel before its token expired; "
    "the session has been terminated."
)


@dataclass
class Watch:
    """One session's limits and clocks, in seconds."""

    started: float
    last_activity: float
    idle: float | None = None
    max_duration: float | None = None
    # The client must have opened its data channel by then (None: no deadline).
    join_deadline: float | None = None
    joined: bool = False
    # The last activity the database has (the caller saves it at a low rate).
    saved_activity: float | None = None

    def reason(self, now: float) -> str | None:
        """Why the session must end at ``now``, or None."""
        if self.max_duration is not None and now - self.started >= self.max_duration:
            return MAX_DURATION_MESSAGE
        if not self.joined and self.join_deadline is not None and now >= self.join_deadline:
            return JOIN_MESSAGE
        if self.idle is not None and now - self.last_activity >= self.idle:
            return IDLE_MESSAGE
        return None

    def next_deadline(self) -> float | None:
        """The earliest moment ``reason`` could change, as things stand."""
        moments = []
        if self.max_duration is not None:
            moments.append(self.started + self.max_duration)
        if not self.joined and self.join_deadline is not None:
            moments.append(self.join_deadline)
        if self.idle is not None:
            moments.append(self.last_activity + self.idle)
        return min(moments, default=None)


class SessionLimits:
    """The limits of every session this server watches."""

    def __init__(self) -> None:
        self._watches: dict[str, Watch] = {}

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._watches

    def __len__(self) -> int:
        return len(self._watches)

    def get(self, session_id: str) -> Watch | None:
        return self._watches.get(session_id)

    def watch(
        self,
        session_id: str,
        now: float,
        *,
        idle: float | None,
        max_duration: float | None,
        started: float | None = None,
        last_activity: float | None = None,
        join_deadline: float | None = None,
        joined: bool = False,
    ) -> Watch:
        """Start watching a session. ``started`` defaults to ``now``, and ``last_activity``
        (what a restart read from the database) to ``now`` as well; an earlier watch of the
        same session keeps its later activity and its join."""
        begun = now if started is None else started
        earlier = self._watches.get(session_id)
        last = last_activity if last_activity is not None else now
        if earlier is not None:
            last = max(last, earlier.last_activity)
            joined = joined or earlier.joined
        watch = Watch(
            started=begun,
            last_activity=last,
            idle=idle,
            max_duration=max_duration,
            join_deadline=join_deadline,
            joined=joined,
            saved_activity=last_activity,
        )
        self._watches[session_id] = watch
        return watch

    def forget(self, session_id: str) -> None:
        self._watches.pop(session_id, None)

    def activity(self, session_id: str, now: float) -> None:
        """Something passed through the session at ``now``."""
        watch = self._watches.get(session_id)
        if watch is not None and now > watch.last_activity:
            watch.last_activity = now

    def joined(self, session_id: str) -> None:
        """The session's client opened its data channel: the join deadline is met."""
        watch = self._watches.get(session_id)
        if watch is not None:
            watch.joined = True

    def stop_idle_watch(self, session_id: str) -> None:
        """Another server watches this session's idle time (the one its frames pass)."""
        watch = self._watches.get(session_id)
        if watch is not None:
            watch.idle = None

    def extend_join(self, session_id: str, deadline: float) -> None:
        """A new client token (ResumeSession) gives the client until ``deadline``."""
        watch = self._watches.get(session_id)
        if watch is not None and (watch.join_deadline is None or deadline > watch.join_deadline):
            watch.join_deadline = deadline

    def expired(self, now: float) -> list[tuple[str, str]]:
        """The sessions that must end at ``now``, with the reason. They stay watched until
        the caller has ended them and calls ``forget``: a failure to end one (the database
        is away) is retried."""
        return [
            (session_id, reason)
            for session_id, watch in self._watches.items()
            if (reason := watch.reason(now)) is not None
        ]

    def seconds_to_next(self, now: float) -> float | None:
        """How long until the earliest deadline (0 when one has passed); None when no
        session has one."""
        deadlines = [d for w in self._watches.values() if (d := w.next_deadline()) is not None]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def unsaved_activity(self) -> dict[str, float]:
        """The last activity of each session whose newest activity is not saved yet."""
        return {
            session_id: watch.last_activity
            for session_id, watch in self._watches.items()
            if watch.saved_activity is None or watch.last_activity > watch.saved_activity
        }

    def saved(self, activity: dict[str, float]) -> None:
        """What ``unsaved_activity`` gave is now in the database."""
        for session_id, moment in activity.items():
            watch = self._watches.get(session_id)
            if watch is not None:
                watch.saved_activity = moment
