"""configure_logging(): structlog setup, called once by `lockd serve`."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """Key-value console logs for people (or JSON for machines) on stderr."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # pysyncobj logs through stdlib logging; keep its CRITICAL false alarms (notes §10.4) visible
    # only at warning level and above, in the same stream.
    logging.basicConfig(level=max(lvl, logging.WARNING), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def short_id(session_id: str) -> str:
    """A session id is a secret: logs carry only its first 8 characters."""
    return session_id[:8] + "…" if len(session_id) > 8 else session_id
