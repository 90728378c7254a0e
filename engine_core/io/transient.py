"""Which failures are transient: the same work, repeated a little later, can succeed.

Only an object store's momentary trouble qualifies. The S3 client retries each request a few
times itself (pyarrow's standard retry strategy); what still fails reaches the engine as an
``OSError`` whose message carries the AWS error: a server error (HTTP 5xx, ``INTERNAL_FAILURE``,
``SERVICE_UNAVAILABLE``), throttling (``SLOW_DOWN``, HTTP 429) or a dropped or timed-out
connection (``NETWORK_CONNECTION``, ``REQUEST_TIMEOUT``). Repeating the step is safe: its
output is a function of its inputs (determinism) and is published atomically, so a repeat
writes the same bytes and a failed attempt leaves nothing a reader would take for a finished
partition.

Everything else is permanent and must fail once, with its code: bad input and bad
configuration (``WORLD_*``, ``POLICY_*``, ``SCENARIO_*`` ...), a missing bucket or a refused
credential (HTTP 4xx), a full or read-only local disk, a failed validation rule, and defects.
Repeating them only delays the error and hides it behind retries.
"""

from __future__ import annotations

import re

from engine_core.errors import EngineError

# EngineError codes that wrap an I/O failure; the cause decides whether it is transient.
STORAGE_CODES = frozenset({"STORAGE_UNAVAILABLE", "STORAGE_NOT_WRITABLE", "STORAGE_WRITE_FAILED"})
# The code given to a transient object-store failure that reached the engine unwrapped
# (a read or a listing, outside a publish); docs/errors.md.
STORAGE_TRANSIENT = "STORAGE_TRANSIENT"

_TRANSIENT_AWS = re.compile(
    r"AWS Error (NETWORK_CONNECTION|INTERNAL_FAILURE|SERVICE_UNAVAILABLE|SLOW_DOWN|THROTTLING"
    r"|REQUEST_TIMEOUT)\b"
    r"|AWS Error \w+ \(HTTP status (5\d\d|429)\)"
)


def is_transient_message(text: str | None) -> bool:
    """Whether an error text is an object store's transient failure (see the module doc)."""
    return bool(text) and _TRANSIENT_AWS.search(text) is not None


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or, for a storage EngineError, the OSError it wraps) is transient."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, EngineError):
            if current.code == STORAGE_TRANSIENT:
                return True
            if current.code not in STORAGE_CODES:
                return False
        elif isinstance(current, OSError) and is_transient_message(str(current)):
            return True
        current = current.__cause__
    return False
