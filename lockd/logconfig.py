"""configure_logging(): structlog setup, called once by `lockd serve`.

Console (key=value, for people) or JSON (one object per line, for machines) on stderr. Events
are stable snake_case names; data goes in keys (docs/operations.md lists the events). Two
safety nets run on every line: session ids (secrets, DESIGN §8) are cut to `short_id()` even
if a caller passed one whole, and pysyncobj's stdlib log lines are rendered in the same format
under one event name, `raft_library_log`, with the text in `message`.
"""

from __future__ import annotations

import logging
import sys

import structlog

SECRET_KEYS = ("session_id", "session_ids")
LIBRARY_EVENT = "raft_library_log"


def short_id(session_id: str) -> str:
    """A session id is a secret: logs carry only its first 8 characters."""
    return session_id[:8] + "…" if len(session_id) > 8 else session_id


def redact_session_ids(_logger, _method, event_dict: dict) -> dict:
    """structlog processor: never let a whole session id reach the output."""
    for key in SECRET_KEYS:
        v = event_dict.get(key)
        if isinstance(v, str):
            event_dict[key] = v if v.endswith("…") else short_id(v)
        elif isinstance(v, (list, tuple)):
            event_dict[key] = [short_id(x) if isinstance(x, str) and not x.endswith("…") else x
                               for x in v]
    return event_dict


def _library_record(_logger, _method, event_dict: dict) -> dict:
    """A stdlib record (pysyncobj): a stable event name, its text under `message`."""
    record = event_dict.get("_record")
    if record is not None:
        event_dict["message"] = event_dict.pop("event", "")
        event_dict["event"] = LIBRARY_EVENT
        event_dict["logger"] = record.name
    return event_dict


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """Key-value console logs for people (or JSON for machines) on stderr."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            redact_session_ids,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # pysyncobj logs through stdlib logging: same stream, same format. Its CRITICAL
    # "truncating already-applied log entries" is a false alarm under load (notes §10.4), so
    # only warning and above are shown.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _library_record],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    redact_session_ids, structlog.processors.format_exc_info, renderer]))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_lockd", False):
            root.removeHandler(h)
    handler._lockd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(max(lvl, logging.WARNING))
