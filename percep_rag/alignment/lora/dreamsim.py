"""The alignment of DreamSim's released models: the release's own LoRA adapter (alignment kind ``dreamsim``).

``dreamsim:<type>`` backbones (:mod:`percep_rag.backbones.dreamsim_release`) are the base
networks; this alignment reads the type's adapter folder (``ensemble_lora``,
``<type>_single_lora``, ``<type>_patch_lora``) with the common peft reader and merges it into a
copy, so the aligned vectors are what ``dreamsim``'s ``PerceptualModel`` after
``PeftModel.from_pretrained`` computes. The adapter's tensors are named for DreamSim's
``PerceptualModel`` (``extractor_list.<i>.model.``); percep-rag's branches are
``branches.<i>.model.`` with the same ViT inside. The embedder picks this alignment by default
for a release backbone; ``--alignment dreamsim`` says so explicitly.

>>> DreamsimAdapterAlignment().kind
'dreamsim'
"""

from __future__ import annotations

import re

import torch

from percep_rag.alignment.lora.peft_format import PeftAdapter, merged_copy, read_adapter
from percep_rag.backbones.base import Backbone
from percep_rag.backbones.dreamsim_release import ReleaseBackbone
from percep_rag.errors import AlignmentError

_DREAMSIM_KEY = re.compile(r"^base_model\.model\.extractor_list\.(\d+)\.model\.")


def dreamsim_to_percep_rag(key: str) -> str:
    """An adapter tensor name of DreamSim's ``PerceptualModel`` as the name of the same tensor in a release backbone.

    >>> dreamsim_to_percep_rag("base_model.model.extractor_list.2.model.blocks.0.attn.qkv.lora_A.weight")
    'base_model.model.branches.2.model.blocks.0.attn.qkv.lora_A.weight'
    """
    return _DREAMSIM_KEY.sub(r"base_model.model.branches.\1.model.", key)


class DreamsimAdapterAlignment:
    """The LoRA adapter of the release a :class:`ReleaseBackbone` was read from, merged for inference."""

    kind = "dreamsim"

    def __init__(self) -> None:
        self._adapter: PeftAdapter | None = None

    @classmethod
    def load(cls, path=None) -> DreamsimAdapterAlignment:
        """The alignment factory's loader: the kind takes no path (the backbone's release says where)."""
        if path is not None:
            raise AlignmentError(
                "the dreamsim alignment takes no path: it is the adapter of the dreamsim:<type> backbone"
            )
        return cls()

    def _read(self, backbone: Backbone) -> PeftAdapter:
        if not isinstance(backbone, ReleaseBackbone):
            raise AlignmentError(
                f"the dreamsim alignment is the adapter of a DreamSim release; {backbone.name!r} is not one "
                "(use a dreamsim:<type> backbone, see `percep-rag models`)"
            )
        if self._adapter is None or self._adapter.folder != backbone.adapter_dir:
            kind = backbone.release
            origin = f"it comes from {kind.zip_name} ({kind.zip_url}), unzipped into {backbone.folder}"
            self._adapter = read_adapter(backbone.adapter_dir, origin=origin)
        return self._adapter

    @property
    def digest(self) -> str:
        if self._adapter is None:
            raise AlignmentError("the dreamsim alignment has not read its adapter yet (check_compatible reads it)")
        return self._adapter.digest

    def check_compatible(self, backbone: Backbone, pooled_dim: int) -> None:
        self._read(backbone)
        kind = backbone.release  # type: ignore[attr-defined]
        if pooled_dim != kind.pooled_dim:
            raise AlignmentError(
                f"{backbone.name} gives DreamSim's vectors with --pooling {kind.pooling} ({kind.pooled_dim}-d); "
                f"the embedder pools to {pooled_dim}-d"
            )

    def adapt_backbone(self, backbone: Backbone) -> Backbone:
        """A copy of the release backbone with its adapter merged (the backbone itself stays the base)."""
        merged = merged_copy(backbone, self._read(backbone), rename=dreamsim_to_percep_rag)
        merged.random_weights = backbone.random_weights
        return merged

    def transform(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled


def default_alignment(backbone: Backbone) -> DreamsimAdapterAlignment | None:
    """The alignment a backbone brings with it: a DreamSim release's adapter, else ``None``."""
    return DreamsimAdapterAlignment() if isinstance(backbone, ReleaseBackbone) else None
