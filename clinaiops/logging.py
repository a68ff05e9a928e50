"""Structured logs: one JSON object per line, carrying the request id and no PHI.

Only whitelisted ``extra`` keys are emitted, so a call site cannot leak a name, a birth date or
free text by passing it along; the message itself should be a fixed event name.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from core.context import current_context

SAFE_EXTRA_KEYS = frozenset(
    {
        "event",
        "method",
        "route",
        "status",
        "duration_ms",
        "user_id",
        "role",
        "patient_id",
        "count",
        "accepted",
        "duplicates",
        "rejected",
        "outcome",
        "task",
        "model_version",
        "sequence",
        "reason_code",
    }
)


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = current_context()
        record.request_id = context.request_id if context else None
        if context and getattr(record, "user_id", None) is None and context.user_id:
            record.user_id = context.user_id
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key in SAFE_EXTRA_KEYS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info:
            # The exception type and where it happened, not its message (which may quote input).
            exc_type = record.exc_info[0]
            entry["exception"] = exc_type.__name__ if exc_type else None
            entry["stack"] = self.formatStack(self._frames(record))
        return json.dumps(entry, default=str)

    @staticmethod
    def _frames(record: logging.LogRecord) -> str:
        import traceback

        tb = record.exc_info[2] if record.exc_info else None
        return "".join(traceback.format_tb(tb)) if tb else ""
