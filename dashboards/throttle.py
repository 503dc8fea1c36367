"""Login throttling per user and per client address, kept in the database.

In: a connection pool on a database with ``citypulse.login_throttle`` (migration 051) and
the settings.  Out: :class:`Throttle` whose :meth:`~Throttle.check` says whether a login
attempt may even be tried, and :meth:`~Throttle.failed` / :meth:`~Throttle.succeeded`
record the outcome.  The table is shared by every web worker (and replica).

Rules, for each key (``user:<name>`` and ``addr:<client address>``): the first
``login_free_failures`` failures (x3 for an address) cost nothing; after that the next
attempt is allowed only ``login_delay_s`` x 2^(failures - free) seconds after the last
failure (attempts sooner are refused unchecked, so a right password does not help); at
``login_user_max_failures`` / ``login_addr_max_failures`` the key is locked for
``login_lockout_s``.  Failures older than ``login_lockout_s`` are forgotten; a successful
login clears its user's count (not its address's).  Wrong kiosk tokens count against the
address only (so nobody can lock the wall out).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from citypulse.settings import Settings

ADDR_FACTOR = 3  # an address (a NAT, an office) may fail this many times more than a user


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is refused now: 'locked' or 'throttled', for how long, which key."""

    reason: str
    retry_after_s: float
    key: str
    step_s: float | None = None  # the delay this step of the throttle imposes


class Throttle:
    """Database-backed login throttle (see the module doc for the rules)."""

    def __init__(self, pool, settings: Settings) -> None:
        self.pool = pool
        self.delay = settings.login_delay_s
        self.lockout = timedelta(seconds=settings.login_lockout_s)
        self.limits = {
            "user": (settings.login_free_failures, settings.login_user_max_failures),
            "addr": (settings.login_free_failures * ADDR_FACTOR,
                     settings.login_addr_max_failures),
        }

    @staticmethod
    def keys(user: str | None, addr: str) -> list[str]:
        """The throttle keys of an attempt (no user key for a kiosk token)."""
        return ([f"user:{user[:100]}"] if user is not None else []) + [f"addr:{addr}"]

    def check(self, user: str | None, addr: str) -> Refusal | None:
        """A :class:`Refusal` if the attempt must not be tried now, else None."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                """SELECT key, failures,
                          extract(epoch FROM locked_until - now()),
                          extract(epoch FROM now() - last_failure)
                   FROM citypulse.login_throttle
                   WHERE key = ANY(%s) AND last_failure > now() - %s""",
                (self.keys(user, addr), self.lockout)).fetchall()
        worst: Refusal | None = None
        for key, failures, locked_s, since_s in rows:
            free, _max = self.limits[key.split(":", 1)[0]]
            if locked_s is not None and locked_s > 0:
                refusal = Refusal("locked", float(locked_s), key)
            elif failures >= free:
                step = self.delay * 2 ** (failures - free)
                wait = step - float(since_s)
                refusal = Refusal("throttled", wait, key, step) if wait > 0 else None
            else:
                refusal = None
            if refusal and (worst is None or refusal.retry_after_s > worst.retry_after_s):
                worst = refusal
        return worst

    def failed(self, user: str | None, addr: str) -> None:
        """Count a failed attempt for the user and the address; lock those at their limit."""
        with self.pool.connection() as conn, conn.transaction():
            for key in self.keys(user, addr):
                _free, limit = self.limits[key.split(":", 1)[0]]
                conn.execute(
                    """INSERT INTO citypulse.login_throttle AS t (key, failures, last_failure)
                       VALUES (%(k)s, 1, now())
                       ON CONFLICT (key) DO UPDATE SET
                           failures = CASE WHEN t.last_failure < now() - %(w)s THEN 1
                                           ELSE t.failures + 1 END,
                           last_failure = now()""", {"k": key, "w": self.lockout})
                conn.execute(
                    """UPDATE citypulse.login_throttle SET locked_until = now() + %s
                       WHERE key = %s AND failures >= %s
                         AND (locked_until IS NULL OR locked_until < now())""",
                    (self.lockout, key, limit))

    def succeeded(self, user: str) -> None:
        """Clear the user's failures after a successful login."""
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM citypulse.login_throttle WHERE key = %s",
                         (self.keys(user, "")[0],))
