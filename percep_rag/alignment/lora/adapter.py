"""A trained human-aligned (HA) LoRA adapter, as inference uses it.

The adapter (peft format) sits in a run directory's ``adapter/`` folder next to
``percep_rag.json``, which records the backbone, its weights digest and the pooling it was
trained with. :meth:`LoraAlignment.adapt_backbone` merges it into a copy of the backbone,
so the aligned model costs exactly one backbone forward. Training lives in
:mod:`percep_rag.alignment.lora.fit`.

>>> LoraAlignment.load("no-such-run")
Traceback (most recent call last):
...
percep_rag.errors.AlignmentError: no-such-run is not a percep-rag LoRA adapter (missing ...)...
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from percep_rag.alignment.lora.peft_format import merged_copy, read_adapter
from percep_rag.backbones.base import Backbone
from percep_rag.errors import AlignmentError

METADATA_FILE = "percep_rag.json"
ADAPTER_DIR = "adapter"


class LoraAlignment:
    """A trained HA adapter, merged into a copy of the backbone for inference.

    ``path`` is a run directory (its ``adapter/``) or the adapter directory itself.
    """

    kind = "lora"

    def __init__(self, adapter_dir: Path, metadata: dict[str, Any]):
        self.adapter_dir = adapter_dir
        self.metadata = metadata

    @classmethod
    def load(cls, path: str | Path) -> LoraAlignment:
        path = Path(path)
        adapter_dir = path / ADAPTER_DIR if (path / ADAPTER_DIR).is_dir() else path
        meta_file = adapter_dir / METADATA_FILE
        missing = [name for name in ("adapter_config.json", METADATA_FILE) if not (adapter_dir / name).is_file()]
        if missing == [METADATA_FILE] and path.name.endswith("_lora"):  # the other source of the same format
            raise AlignmentError(
                f"{path} is a DreamSim release adapter, not a percep-rag run: use the release's backbone, "
                f"e.g. -b dreamsim:{path.name.removesuffix('_lora').removesuffix('_single').removesuffix('_patch')}"
                f"{'_patch' if path.name.endswith('_patch_lora') else ''} --weights {path.parent} "
                "(its adapter is the aligned space)"
            )
        if not adapter_dir.is_dir() or missing:
            raise AlignmentError(
                f"{path} is not a percep-rag LoRA adapter (missing {', '.join(missing) or 'folder'}); "
                "it is written by `percep-rag align fit --method lora`"
            )
        try:
            metadata = json.loads(meta_file.read_text())
        except json.JSONDecodeError as error:
            raise AlignmentError(f"{meta_file}: not valid JSON ({error.msg})") from None
        return cls(adapter_dir, metadata)

    @property
    def digest(self) -> str:
        hasher = hashlib.sha256()
        for name in sorted(p.name for p in self.adapter_dir.iterdir() if p.suffix in (".safetensors", ".bin")):
            hasher.update((self.adapter_dir / name).read_bytes())
        return hasher.hexdigest()[:16]

    @property
    def pooling(self) -> str:
        return self.metadata.get("pooling", "cls")

    def check_compatible(self, backbone: Backbone, pooled_dim: int) -> None:
        expected = self.metadata.get("backbone")
        if expected != backbone.name:
            raise AlignmentError(
                f"LoRA adapter {self.adapter_dir} was trained on {expected!r}, not on {backbone.name!r}"
            )
        if self.metadata.get("pooled_dim") not in (None, pooled_dim):
            raise AlignmentError(
                f"LoRA adapter {self.adapter_dir} was trained with pooling {self.pooling!r} "
                f"({self.metadata['pooled_dim']}-d); the embedder pools to {pooled_dim}-d: use the same pooling"
            )
        digest = self.metadata.get("base_weights_digest")
        if digest is not None and digest != backbone.weights_digest():
            raise AlignmentError(
                f"LoRA adapter {self.adapter_dir} was trained on other weights of {backbone.name!r} "
                f"(digest {digest}, these are {backbone.weights_digest()})"
            )

    def adapt_backbone(self, backbone: Backbone) -> Backbone:
        """A copy of ``backbone`` with the adapter merged into its weights (read like DreamSim's: one reader)."""
        adapter = read_adapter(self.adapter_dir, origin="it is written by `percep-rag align fit --method lora`")
        merged = merged_copy(backbone, adapter)
        merged.random_weights = backbone.random_weights
        return merged

    def transform(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled
