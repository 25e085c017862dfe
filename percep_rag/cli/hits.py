"""How ``search`` and ``show`` print hits: tables, JSON and grid captions, with the copy marks
("copy" for the query's pixels, "near" for the calibrated threshold) and the files a hit stands for."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from percep_rag.point_records import payload_records

DuplicateThresholdOption = Annotated[
    float | None,
    typer.Option(
        "--duplicate-threshold",
        min=-1.0,
        max=1.0,
        help="Mark hits at or above this cosine as near copies of the query (default: the threshold "
        "`duplicates --calibrate` stored for the collection; without one, only exact pixel copies are marked).",
    ),
]


def copy_rule_text(space: str, rule: Any) -> str:
    """What the copy column means for ``space``, one line.

    >>> copy_rule_text("aligned", None)
    'copy = the same pixels; near: not marked (no threshold calibrated for aligned: duplicates --calibrate)'
    """
    if rule is None:
        return f"copy = the same pixels; near: not marked (no threshold calibrated for {space}: duplicates --calibrate)"
    return f"copy = the same pixels; near = {space} cosine >= {rule.threshold:.4f} ({rule.source})"



def hits_json(query: Path | str, embedder: Any, hits: dict[str, list], *, text: bool = False) -> dict[str, Any]:
    return {
        **({"query_text": query} if text else {"query": str(query)}),
        "backbone": embedder.backbone.name,
        "alignment": embedder.alignment.kind,
        "random_weights": bool(embedder.backbone.random_weights),
        "hits": {
            space: [
                {
                    "rank": rank,
                    "score": float(hit.score),
                    "id": str(hit.id),
                    "copy_of_query": hit.copy_of_query,
                    "duplicate_of_query": bool(hit.duplicate_of_query),
                    "files": len(payload_records(hit.payload)),
                    "payload": hit.payload,
                }
                for rank, hit in enumerate(found, start=1)
            ]
            for space, found in hits.items()
        },
    }


#: The copy column of a hit: the query's pixels, a near copy, or neither.
COPY_MARKS = {"exact": "copy", "near": "near", None: "-"}


def hits_table(hits: list) -> str:
    rows = [("rank", "score", "label", "copy", "files", "uri")]
    for rank, hit in enumerate(hits, start=1):
        rows.append(
            (
                str(rank),
                f"{hit.score:.4f}",
                str(hit.payload.get("label", "")),
                COPY_MARKS[hit.copy_of_query],
                str(len(payload_records(hit.payload))),
                str(hit.payload.get("uri", "")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join([*(row[i].ljust(widths[i]) for i in range(5)), row[5]]) for row in rows)


def hit_caption(rank: int, hit: Any) -> str:
    """A grid caption: rank, label, cosine, the copy mark and the files a hit stands for.

    >>> from percep_rag.store import ScoredPoint
    >>> hit_caption(1, ScoredPoint("a", 0.9512, {"label": "cat"}, copy_of_query="near"))
    '#1 cat\\ncos 0.951 (near copy)'
    """
    mark = {"exact": " (copy)", "near": " (near copy)", None: ""}[hit.copy_of_query]
    files = len(payload_records(hit.payload))
    stands_for = f" · {files} files" if files > 1 else ""
    return f"#{rank} {hit.payload.get('label', '')}\ncos {hit.score:.3f}{mark}{stands_for}"
