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


def import_compiler_quietly() -> None:
    """Import ``torch.utils.cpp_extension`` (what inductor imports on its first CPU compile) with
    its import-time warning ``No CUDA runtime is found, using CUDA_HOME=...`` dropped.

    A CUDA build of torch on a machine without a GPU (a CPU server with ``nvcc`` on the path)
    logs it once, from the module's top level, in the middle of the user's ``index`` output; it
    says nothing about percep-rag's work, which runs on the CPU by design. Imported here first,
    under the filter, the module is cached and never warns later.

    >>> import_compiler_quietly()
    """
    with without_log_records("No CUDA runtime is found", "torch.utils.cpp_extension"):
        import torch.utils.cpp_extension  # noqa: F401
