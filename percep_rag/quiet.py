"""Upstream log records that would reach users as noise, dropped where they arise.

>>> import logging
>>> with without_log_records("noise", "demo"):
...     logging.getLogger("demo").warning("noise: ignore me")
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def without_log_records(text: str, logger: str = "") -> Iterator[None]:
    """Drop the records of ``logger`` (the root logger by default) whose message contains ``text``.

    Only records logged through that very logger are seen (a logger's filters do not apply to
    its children's records), so name the logger the upstream library logs with.
    """

    def keep(record: logging.LogRecord) -> bool:
        return text not in record.getMessage()

    target = logging.getLogger(logger)
    target.addFilter(keep)
    try:
        yield
    finally:
        target.removeFilter(keep)
