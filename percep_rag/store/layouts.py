"""Named memory layouts of a collection: the :class:`CollectionOptions` a user chooses between.

A point holds two 768-d vectors (``base`` and ``aligned``); at catalog size what they cost
in RAM decides the machine. Each layout is one set of options, measured side by side on
the same 1M x 768 data by ``benchmarks/store_throughput.py`` (table in
``benchmarks/RESULTS.md``, the choice argued in ``docs/scale-out.md``):

* ``low`` (the default): float32 originals on disk, read only to rescore the candidates;
  the int8 copies and the graph pinned in RAM (2.0 KB a point at 1M, recall@10 0.990);
* ``balanced``: float32 originals, int8 copies and the HNSW graph all in RAM (the layout
  before issue 24; 8.0 KB a point at 1M, a lower p99);

and the further candidates the benchmark compares (``float16``, ``binary2-disk``,
``binary1.5-disk``, ``binary1-disk``). ``index --memory NAME`` picks one for a new collection;
an existing collection keeps the layout it was created with.

>>> memory_layout("low").on_disk
True
>>> memory_layout("low") == CollectionOptions()
True
>>> memory_layout("tiny")
Traceback (most recent call last):
...
percep_rag.errors.ConfigError: unknown memory layout 'tiny'; choose one of balanced, low, float16, ...
"""

from __future__ import annotations

from typing import Any

from percep_rag.errors import ConfigError
from percep_rag.store.schema import CollectionOptions

#: The layouts ``index --memory`` offers (the first is the default).
MEMORY_CHOICES = ("low", "balanced")

#: Every measured layout: name -> the CollectionOptions fields it sets.
MEMORY_LAYOUTS: dict[str, dict[str, Any]] = {
    "balanced": {"on_disk": False},
    "low": {"on_disk": True, "quantization": "int8", "oversampling": 2.0},
    "float16": {"datatype": "float16", "on_disk": False},
    "binary2-disk": {"on_disk": True, "quantization": "binary2", "oversampling": 4.0},
    "binary1.5-disk": {"on_disk": True, "quantization": "binary1.5", "oversampling": 4.0},
    "binary1-disk": {"on_disk": True, "quantization": "binary1", "oversampling": 4.0},
}


def memory_layout(name: str, **overrides: Any) -> CollectionOptions:
    """The :class:`CollectionOptions` of layout ``name`` (``overrides`` set further fields).

    >>> memory_layout("binary2-disk", index_threshold=5000).quantization
    'binary2'
    """
    if name not in MEMORY_LAYOUTS:
        choices = ", ".join(MEMORY_LAYOUTS)
        raise ConfigError(f"unknown memory layout {name!r}; choose one of {choices}")
    return CollectionOptions(**{**MEMORY_LAYOUTS[name], **overrides})


def layout_of(options: CollectionOptions) -> str | None:
    """The name of the layout ``options`` follow (its fields set as the layout sets them), or ``None``.

    >>> layout_of(memory_layout("low", index_threshold=500))
    'low'
    >>> layout_of(CollectionOptions(datatype="float16", on_disk=True)) is None
    True
    """
    fields = ("quantization", "datatype", "on_disk", "oversampling")
    for name in MEMORY_LAYOUTS:
        reference = memory_layout(name)
        if all(getattr(options, f) == getattr(reference, f) for f in fields):
            return name
    return None
