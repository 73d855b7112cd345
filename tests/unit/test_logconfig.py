"""Server logs: stable snake_case event names, session ids never whole, JSON for every line."""

from __future__ import annotations

import ast
import json
import logging
import pathlib
import re

import pytest
import structlog

from lockd.logconfig import LIBRARY_EVENT, configure_logging, short_id

LOCKD = pathlib.Path(__file__).resolve().parents[2] / "lockd"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def _log_calls():
    for path in sorted(LOCKD.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LEVELS and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "log"):
                yield path.name, node


def test_server_log_events_are_constant_snake_case_names():
    bad = []
    calls = list(_log_calls())
    assert len(calls) > 20
    for name, call in calls:
        first = call.args[0] if call.args else None
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)
                and SNAKE.match(first.value)):
            bad.append(f"{name}:{call.lineno}")
    assert not bad, f"log events that are not constant snake_case names: {bad}"


def test_session_ids_are_logged_only_through_short_id():
    bad = []
    for name, call in _log_calls():
        for kw in call.keywords:
            if kw.arg in ("session_id", "session_ids"):
                v = kw.value
                if not (isinstance(v, ast.Call) and getattr(v.func, "id", "") == "short_id"):
                    bad.append(f"{name}:{call.lineno}")
    assert not bad, bad


@pytest.fixture
def json_logs(capsys):
    """Configure JSON logging on the test's own stderr; call it again to read the lines."""
    state = {"configured": False}

    def logs():
        if not state["configured"]:
            configure_logging("json", "debug")
            state["configured"] = True
            return None
        return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    try:
        yield logs
    finally:
        root = logging.getLogger()
        for h in list(root.handlers):
            if getattr(h, "_lockd", False):
                root.removeHandler(h)
        structlog.reset_defaults()


def test_a_whole_session_id_is_cut_even_if_a_caller_forgets(json_logs):
    json_logs()
    sid = "0123456789abcdef0123456789abcdef"
    log = structlog.get_logger(component="test")
    log.info("session_opened", session_id=sid)
    log.info("sessions_listed", session_ids=[sid, sid])
    log.info("session_closed", session_id=short_id(sid))
    lines = json_logs()
    assert [line["session_id"] for line in lines if "session_id" in line] == [short_id(sid)] * 2
    assert lines[1]["session_ids"] == [short_id(sid)] * 2
    assert all(sid not in json.dumps(line) for line in lines)


def test_json_lines_have_timestamp_level_and_event(json_logs):
    json_logs()
    structlog.get_logger(component="test").warning("stale_epoch", epoch=3)
    (line,) = json_logs()
    assert line["event"] == "stale_epoch" and line["level"] == "warning" and line["epoch"] == 3
    assert line["timestamp"].endswith("Z") and line["component"] == "test"


def test_pysyncobj_stdlib_lines_are_json_too_under_one_event_name(json_logs):
    json_logs()
    logging.getLogger("pysyncobj.syncobj").warning("failed to load full dump %s", "x")
    logging.getLogger("pysyncobj.syncobj").info("below warning: dropped")
    (line,) = json_logs()
    assert line["event"] == LIBRARY_EVENT
    assert line["message"] == "failed to load full dump x"
    assert line["logger"] == "pysyncobj.syncobj" and line["level"] == "warning"
