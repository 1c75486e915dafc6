"""Logging for people and for machines, with secrets kept out of both.

Human-readable lines by default; one JSON object per line with `mashang --log-format json`
(for journald, Loki or anything that reads JSON lines). Every line, whichever the format,
passes through the redactor last: the central key, the broker and page passwords, and
credentials in URLs (`user:password@`, `?key=`, `access_token=`) never reach a log.

The level comes from `--log-level`, or from `[logging] level` in the gateway's config file,
which SIGHUP rereads (see `edge.ops.operations`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import datetime
from typing import Any, TextIO

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
REDACTED = "[redacted]"
HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Credentials that travel inside URLs and headers: basic-auth user info, query tokens (WeCom's
# `key=`, DingTalk's `access_token=` and `sign=`), HTTP Authorization and our signature header.
_PATTERNS = [
    (re.compile(r"(?P<keep>[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", re.IGNORECASE),
     rf"\g<keep>{REDACTED}@"),
    (re.compile(r"(?P<keep>[?&](?:key|access_token|token|sign|secret|password)=)[^&\s\"']+",
                re.IGNORECASE), rf"\g<keep>{REDACTED}"),
    (re.compile(r"(?P<keep>Authorization[\"']?\s*[:=]\s*[\"']?(?:Basic|Bearer)\s+)[^\s\"',}]+",
                re.IGNORECASE), rf"\g<keep>{REDACTED}"),
    (re.compile(r"(?P<keep>X-Mashang-Signature[\"']?\s*[:=]\s*[\"']?)[0-9a-f]{16,}",
                re.IGNORECASE), rf"\g<keep>{REDACTED}"),
]


class Redactor:
    """Replaces known secret values and credential-shaped text. Thread-safe."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, *values: str | bytes | None) -> None:
        with self._lock:
            known = set(self._secrets)
            for value in values:
                if isinstance(value, bytes):
                    value = value.decode(errors="replace")
                # Very short values would redact ordinary words; they are weak secrets anyway.
                if value and len(value) >= 4:
                    known.add(value)
            # Longest first, so a secret that contains another is replaced whole.
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


redactor = Redactor()


class HumanFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(HUMAN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redactor(super().format(record))


# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, thread, and exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created).astimezone().isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redactor(record.getMessage()),
            "thread": record.threadName,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = redactor(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redactor(self.formatStack(record.stack_info))
        line = json.dumps(entry, ensure_ascii=False, default=str)
        return redactor(line) if entry.keys() - {"ts", "level", "logger", "msg", "thread"} else line


def configure(level: str | None = None, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Set up the root logger once per process: one handler, the chosen format."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    root.addHandler(handler)
    set_level(level or "info")
    # Whatever else would reach stderr goes through the same format (and the redactor):
    # warnings, and the traceback of a thread that dies.
    logging.captureWarnings(True)
    threading.excepthook = _thread_died


def _thread_died(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    # The exception carries its type and traceback (the hook's exc_type and exc_traceback are
    # taken from it); exc_value is None only when the hook is called by hand.
    logging.getLogger("edge.threads").critical("thread %s died", name, exc_info=args.exc_value)


def set_level(level: str) -> str:
    """Change the level of the whole process; returns the level now in force."""
    name = level.upper()
    if not isinstance(logging.getLevelName(name), int):
        raise ValueError(f"unknown log level {level!r}: expected one of {', '.join(LEVELS)}")
    logging.getLogger().setLevel(name)
    # paho and aiohttp are chatty below warning; they follow us only from info upwards.
    quiet = max(logging.getLevelName(name), logging.INFO)
    for noisy in ("aiohttp.access", "aiohttp.client", "asyncio"):
        logging.getLogger(noisy).setLevel(quiet)
    return name.lower()


def current_level() -> str:
    return logging.getLevelName(logging.getLogger().level).lower()
