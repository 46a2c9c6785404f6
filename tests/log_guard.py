"""Turn ERROR log records into test failures: client libraries only log what goes wrong in handlers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest


class _ErrorRecords(logging.Handler):
    def __init__(self, ignore: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__(logging.ERROR)
        self._ignore = ignore
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not self._ignore(record):
            self.records.append(record)


@contextmanager
def fail_on_error_logs(
    logger_names: Sequence[str], *, ignore: Callable[[logging.LogRecord], bool] = lambda record: False
) -> Iterator[None]:
    """Collect ERROR records of these loggers while the block runs; fail the test if any arrived."""
    handler = _ErrorRecords(ignore)
    loggers = [logging.getLogger(name) for name in logger_names]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    if handler.records:
        pytest.fail(
            "errors were logged:\n" + "\n".join(f"{r.name}: {r.getMessage()}" for r in handler.records)
        )
