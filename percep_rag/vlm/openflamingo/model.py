"""Building OpenFlamingo models from local parts: released checkpoints, or tiny random ones.

Nothing here downloads. :func:`load_openflamingo` assembles a released model from files
already on this machine (the Flamingo checkpoint, the CLIP weights, the LM folder) and
raises one :class:`~percep_rag.errors.WeightsNotFoundError` naming every missing file and
where to put it. :mod:`percep_rag.vlm.openflamingo.tiny` builds a small random-weight model in code,
for tests and demos, with the same :func:`assemble_flamingo`.

Every model comes out with :func:`~percep_rag.vlm.openflamingo.compat.apply_compat` applied, in
eval mode, in a :class:`FlamingoBundle` with its tokenizer and image processor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from open_flamingo.src.flamingo import Flamingo
from torch import nn

from percep_rag.backbones.weights import HubFile, local_weight_file, weights_dir
from percep_rag.errors import ConfigError, WeightsNotFoundError
from percep_rag.vlm.openflamingo.compat import apply_compat, check_checkpoint_keys, extend_lm, remap_legacy_keys
from percep_rag.vlm.openflamingo.prompt import EOC_TOKEN, MEDIA_TOKEN
from percep_rag.vlm.openflamingo.releases import (
    DEFAULT_RELEASE,
    RELEASES,
    FlamingoRelease,
    get_release,
)

__all__ = [
    "DEFAULT_RELEASE",
    "EOC_TOKEN",
    "MEDIA_TOKEN",
    "PAD_TOKEN",
    "RELEASES",
    "FlamingoBundle",
    "FlamingoRelease",
    "assemble_flamingo",
    "load_flamingo_checkpoint",
    "load_openflamingo",
    "open_gates",
    "prepare_tokenizer",
]

PAD_TOKEN = "<PAD>"

ImageProcessor = Callable[[Any], torch.Tensor]


@dataclass
class FlamingoBundle:
    """A ready model with what is needed to feed it.

    ``random_weights`` is True for models that were never trained (tiny, benchmark).
    """

    model: Flamingo
    tokenizer: Any  # a transformers PreTrainedTokenizerBase
    image_processor: ImageProcessor
    name: str
    random_weights: bool


# --------------------------------------------------------------------------- assembly


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Add Flamingo's special tokens (and a pad token if missing) and pad on the left, as open_flamingo does."""
    tokenizer.add_special_tokens({"additional_special_tokens": [EOC_TOKEN, MEDIA_TOKEN]})
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    tokenizer.padding_side = "left"
    return tokenizer


def _last_id(tokenizer: Any, text: str) -> int:
    # [-1] skips the BOS that LLaMA-style tokenizers prepend (open_flamingo's factory does the same).
    return tokenizer.encode(text)[-1]


def assemble_flamingo(
    vision_tower: nn.Module,
    vis_dim: int,
    lang_encoder: nn.Module,
    tokenizer: Any,
    *,
    decoder_layers_attr: str,
    cross_attn_every_n_layers: int,
) -> Flamingo:
    """Wrap an open_clip vision tower and a HF causal LM into a compat ``Flamingo`` (eval mode).

    ``vision_tower`` is an open_clip ``VisionTransformer`` (``clip.visual``); its patch tokens
    are what Flamingo reads. ``tokenizer`` must already have gone through
    :func:`prepare_tokenizer`. The LM's embeddings are resized only when the tokenizer is
    larger, so a random benchmark LM can keep its full vocabulary.
    """
    vision_tower.output_tokens = True
    extend_lm(lang_encoder)
    lang_encoder.set_decoder_layers_attr_name(decoder_layers_attr)
    if len(tokenizer) > lang_encoder.get_input_embeddings().num_embeddings:
        lang_encoder.resize_token_embeddings(len(tokenizer))
    model = Flamingo(
        _VisualHolder(vision_tower),
        lang_encoder,
        eoc_token_id=_last_id(tokenizer, EOC_TOKEN),
        media_token_id=_last_id(tokenizer, MEDIA_TOKEN),
        vis_dim=vis_dim,
        cross_attn_every_n_layers=cross_attn_every_n_layers,
    )
    return apply_compat(model).eval()


class _VisualHolder(nn.Module):
    """Flamingo keeps ``vision_encoder.visual``; this lets us pass a bare tower."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual


def open_gates(model: Flamingo, value: float = 1.0) -> None:
    """Set every tanh gate to ``value``: gates start at 0, where an untrained Flamingo ignores images."""
    with torch.no_grad():
        for layer in model.lang_encoder.gated_cross_attn_layers:
            if layer is not None:
                layer.attn_gate.fill_(value)
                layer.ff_gate.fill_(value)


# --------------------------------------------------------------------------- released models


@dataclass(frozen=True)
class _Missing:
    what: str
    where: list[str]


_LM_WEIGHT_GLOBS = (
    "*.safetensors",
    "pytorch_model*.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def _resolve_file(what: str, explicit: str | os.PathLike | None, local_name: str, hub: HubFile) -> Path | _Missing:
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_file():
            return path
        return _Missing(what, [f"{path} (given explicitly, does not exist)"])
    found = local_weight_file(local_name) or hub.cached_path()
    if found is not None:
        return found
    return _Missing(
        what,
        [
            f"{weights_dir() / local_name}.pt (or .safetensors/.bin; folder set by $PERCEP_RAG_WEIGHTS)",
            f"the Hugging Face cache as repo {hub.repo_id!r}, file {hub.filenames[0]!r} "
            f"(`hf download {hub.repo_id} {hub.filenames[0]}` on a machine with internet)",
            "or pass the path explicitly",
        ],
    )


def _lm_dir_problems(path: Path) -> list[str]:
    problems = []
    if not (path / "config.json").is_file():
        problems.append(f"{path / 'config.json'}")
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        problems.append(f"{path}/tokenizer.json (or tokenizer_config.json + vocab files)")
    if not any(any(path.glob(pattern)) for pattern in _LM_WEIGHT_GLOBS):
        problems.append(f"{path}/model.safetensors (or pytorch_model.bin, or sharded files with their index)")
    return problems


def _resolve_lm_dir(explicit: str | os.PathLike | None, repo: str) -> Path | _Missing:
    if explicit is not None:
        path = Path(explicit).expanduser()
        problems = _lm_dir_problems(path) if path.is_dir() else [f"{path} (folder does not exist)"]
        if not problems:
            return path
        return _Missing(f"language model + tokenizer folder for {repo}", problems)
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo, "config.json")  # reads the cache only, never the network
    if isinstance(config, str) and not _lm_dir_problems(Path(config).parent):
        return Path(config).parent
    return _Missing(
        f"language model + tokenizer {repo}",
        [
            f"the Hugging Face cache as repo {repo!r} (config.json, tokenizer files and weights): "
            f"`hf download {repo}` on a machine with internet",
            "or a local folder with those files, passed as lang=/path/to/folder",
        ],
    )


def _raise_missing(release: FlamingoRelease, missing: list[_Missing]) -> None:
    lines = [f"cannot load {release.name}: {len(missing)} part(s) missing on this machine (nothing is downloaded)."]
    for item in missing:
        lines.append(f"* {item.what}; put it in one of:")
        lines.extend(f"    - {where}" for where in item.where)
    lines.append(
        "For tests and demos without weights use percep_rag.vlm.openflamingo.build_tiny_flamingo() (random weights)."
    )
    raise WeightsNotFoundError("\n".join(lines))


def load_openflamingo(
    checkpoint: str | os.PathLike | None = None,
    *,
    release: str = DEFAULT_RELEASE,
    vision: str | None = None,
    vision_weights: str | os.PathLike | None = None,
    lang: str | os.PathLike | None = None,
    cross_attn_every_n_layers: int | None = None,
    decoder_layers_attr: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> FlamingoBundle:
    """Load a released OpenFlamingo from local files (defaults: OpenFlamingo-4B, GPT-NeoX LM).

    ``checkpoint``: the release's ``checkpoint.pt``; ``vision``: the open_clip config
    (default ``ViT-L-14-quickgelu``) with ``vision_weights`` its CLIP file; ``lang``: a local
    folder with the LM and its tokenizer. Each ``None`` is looked up in
    ``$PERCEP_RAG_WEIGHTS`` and the offline HF cache. Every missing part is named in one
    :class:`~percep_rag.errors.WeightsNotFoundError`; a checkpoint that does not fit raises
    :class:`~percep_rag.vlm.openflamingo.errors.CheckpointMismatchError`.

    >>> load_openflamingo("/nonexistent/checkpoint.pt", vision_weights="/nonexistent/clip.bin", lang="/nonexistent")
    Traceback (most recent call last):
    ...
    percep_rag.errors.WeightsNotFoundError: cannot load OpenFlamingo-4B-vitl-rpj3b: 3 part(s) missing ...
    """
    spec = get_release(release)
    vision = vision or spec.vision_model
    if vision in ("ViT-L-14", "ViT-B-32", "ViT-B-16"):
        raise ConfigError(
            f"open_clip {vision!r} builds GELU towers, but OpenFlamingo's OpenAI CLIP needs QuickGELU: "
            f"use {vision}-quickgelu"
        )
    if not spec.native_lm and lang is None:
        raise ConfigError(
            f"{release} uses a remote-code MPT LM that transformers 5 cannot run; use {DEFAULT_RELEASE}, or pass "
            "lang= a folder with a native transformers model (e.g. MptForCausalLM weights)"
        )
    from percep_rag.backbones.registry import get_backbone_entry

    vision_entry = get_backbone_entry(spec.vision_backbone)
    parts = [
        _resolve_file(
            f"OpenFlamingo checkpoint ({spec.hub_repo}/{spec.checkpoint_file})",
            checkpoint,
            release,
            spec.checkpoint_hub,
        ),
        _resolve_file(
            f"CLIP weights for {vision} (OpenAI ViT-L/14)", vision_weights, spec.vision_backbone, vision_entry.hub
        ),
        _resolve_lm_dir(lang, spec.lm_repo),
    ]
    missing = [part for part in parts if isinstance(part, _Missing)]
    if missing:
        _raise_missing(spec, missing)
    checkpoint_path, vision_path, lm_dir = parts
    bundle = _build_release(
        spec,
        vision,
        vision_path,
        lm_dir,
        cross_attn_every_n_layers or spec.cross_attn_every_n_layers,
        decoder_layers_attr or spec.decoder_layers_attr,
        dtype,
    )
    load_flamingo_checkpoint(bundle.model, checkpoint_path)
    bundle.model.to(device=device, dtype=dtype)
    return bundle


def _build_release(
    spec: FlamingoRelease,
    vision: str,
    vision_path: Path,
    lm_dir: Path,
    cross_attn_every_n_layers: int,
    decoder_layers_attr: str,
    dtype: torch.dtype,
) -> FlamingoBundle:
    import open_clip
    from transformers import AutoModelForCausalLM, AutoTokenizer

    clip, _, image_processor = open_clip.create_model_and_transforms(vision, pretrained=str(vision_path))
    tower = clip.visual
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(lm_dir, local_files_only=True))
    # Remote code is never trusted: the 4B release's GPT-NeoX is native in transformers.
    language = AutoModelForCausalLM.from_pretrained(lm_dir, local_files_only=True, dtype=dtype)
    model = assemble_flamingo(
        tower,
        tower.transformer.width,
        language,
        tokenizer,
        decoder_layers_attr=decoder_layers_attr,
        cross_attn_every_n_layers=cross_attn_every_n_layers,
    )
    return FlamingoBundle(model, tokenizer, image_processor, spec.name, random_weights=False)


def load_flamingo_checkpoint(model: Flamingo, path: str | os.PathLike) -> None:
    """Load an OpenFlamingo ``checkpoint.pt``: legacy LM names renamed, then every key checked.

    See :func:`~percep_rag.vlm.openflamingo.compat.remap_legacy_keys` and
    :func:`~percep_rag.vlm.openflamingo.compat.check_checkpoint_keys`.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model_state_dict" in state:  # training checkpoints wrap the weights
        state = state["model_state_dict"]
    state = {key.removeprefix("module."): value for key, value in state.items()}
    state = remap_legacy_keys(model, state)
    check_checkpoint_keys(model, state)
    model.load_state_dict(state, strict=False)
