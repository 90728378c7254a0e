"""The one error type of the engine. Codes are stable and listed in docs/errors.md."""

from __future__ import annotations


class EngineError(Exception):
    """A failure the user can act on.

    ``code`` is a stable identifier (``WORLD_DUPLICATE_KEY``, ``POLICY_INVALID`` ...) listed in
    docs/errors.md; ``table``/``column``/``key`` locate the offending input when there is one.
    """

    def __init__(
        self,
        code: str,
        message: str,
        table: str | None = None,
        column: str | None = None,
        key: object | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.table = table
        self.column = column
        self.key = key
        # the fields are the exception's args, so it pickles (a cluster worker's error reaches
        # the coordinator) and re-raises with them intact; str() still gives the message
        super().__init__(code, message, table, column, key)

    def __str__(self) -> str:
        where = []
        if self.table is not None:
            where.append(f"table={self.table}")
        if self.column is not None:
            where.append(f"column={self.column}")
        if self.key is not None:
            where.append(f"key={self.key!r}")
        loc = f" [{', '.join(where)}]" if where else ""
        return f"{self.code}: {self.message}{loc}"

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "message": self.message,
            "table": self.table,
            "column": self.column,
            "key": None if self.key is None else str(self.key),
        }
