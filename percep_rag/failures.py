"""The one failure record: an input that was left out of a run, and why.

Embedding, indexing and evaluation all report their failures as :class:`Failure` rows,
never by dropping an input silently.

>>> Failure(source="a.jpg", reason="not an image", index=3)
Failure(source='a.jpg', reason='not an image', index=3, record_id=None)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    """``source`` (a path, URI or description) could not be used because of ``reason``.

    ``index`` is the input position where inputs are a sequence; ``record_id`` the record's
    id where inputs are records.
    """

    source: str
    reason: str
    index: int | None = None
    record_id: str | None = None

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"
