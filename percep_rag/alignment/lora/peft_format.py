"""The one reader of peft LoRA adapter folders, for both sources: percep-rag's runs and DreamSim's releases.

A folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` (or ``adapter_model.bin``,
read with ``torch.load(weights_only=True)``). :func:`read_adapter` reads and checks it;
:func:`merged_copy` puts its tensors (renamed from the source's module names to the backbone's
when they differ) into a copy of a backbone through peft, checks that every tensor found its
module, and merges them, so inference costs one plain backbone forward.

>>> read_adapter("no-such-folder", origin="a test")
Traceback (most recent call last):
...
percep_rag.errors.AlignmentError: missing no-such-folder/adapter_config.json (the LoRA adapter's config); a test
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from percep_rag.errors import AlignmentError

CONFIG_FILE = "adapter_config.json"
#: Weight files peft writes, in the order they are looked for.
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class PeftAdapter:
    """A LoRA adapter as read from its folder: its config (``adapter_config.json``) and its tensors."""

    folder: Path
    config: dict[str, Any]
    weights_file: Path
    tensors: dict[str, torch.Tensor]
    #: Where the folder comes from, for error messages (a run, a release zip).
    origin: str

    @property
    def digest(self) -> str:
        """16 hex digits of the weight file's content."""
        return hashlib.sha256(self.weights_file.read_bytes()).hexdigest()[:16]


def read_adapter(folder: str | Path, *, origin: str) -> PeftAdapter:
    """Read the adapter in ``folder``; a missing or unreadable file is an :class:`AlignmentError` naming it."""
    folder = Path(folder)
    config_file = folder / CONFIG_FILE
    if not config_file.is_file():
        raise AlignmentError(f"missing {config_file} (the LoRA adapter's config); {origin}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AlignmentError(f"{config_file} is not valid JSON ({error}); {origin}") from None
    if not isinstance(config, dict) or str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise AlignmentError(f"{config_file} is not a LoRA adapter config (peft_type {config.get('peft_type')!r})")
    weights_file = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights_file is None:
        raise AlignmentError(
            f"missing {folder / WEIGHT_FILES[0]} (or {WEIGHT_FILES[1]}), the adapter's weights; {origin}"
        )
    try:
        if weights_file.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(weights_file)
        else:
            tensors = torch.load(weights_file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a truncated or unsafe file: one line naming it
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise AlignmentError(f"{weights_file} cannot be loaded safely ({first}); {origin}") from None
    if not isinstance(tensors, dict) or not tensors or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise AlignmentError(f"{weights_file} holds no adapter tensors; {origin}")
    return PeftAdapter(folder, config, weights_file, tensors, origin)


def lora_config(adapter: PeftAdapter):
    """The ``peft.LoraConfig`` of ``adapter`` (every field its JSON sets that this peft knows)."""
    import peft

    known = set(peft.LoraConfig.__dataclass_fields__)
    settings = {key: value for key, value in adapter.config.items() if key in known and key != "peft_type"}
    settings["inference_mode"] = True
    try:
        return peft.LoraConfig(**settings)
    except (TypeError, ValueError) as error:
        raise AlignmentError(f"{adapter.folder / CONFIG_FILE}: {error}; {adapter.origin}") from None


def merged_copy(module: nn.Module, adapter: PeftAdapter, rename: Callable[[str], str] | None = None) -> nn.Module:
    """A copy of ``module`` with ``adapter`` merged into its weights (``module`` is left as it is).

    ``rename`` maps each saved tensor name to ``module``'s names (``None``: they are the same).
    Tensors that fit no module, or modules left without their tensors, are an :class:`AlignmentError`.
    """
    import peft

    tensors = {rename(key) if rename else key: value for key, value in adapter.tensors.items()}
    try:
        model = peft.get_peft_model(copy.deepcopy(module), lora_config(adapter))
    except ValueError as error:  # no module matches target_modules
        raise AlignmentError(
            f"{adapter.folder} does not fit {type(module).__name__}: {error}; {adapter.origin}"
        ) from None
    try:
        result = peft.set_peft_model_state_dict(model, tensors)
    except RuntimeError as error:  # a tensor of another shape
        detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), str(error))[:200]
        raise AlignmentError(
            f"{adapter.weights_file} does not fit this backbone ({detail}); {adapter.origin}"
        ) from None
    unexpected = sorted(result.unexpected_keys)
    missing = sorted(key for key in result.missing_keys if "lora_" in key)
    if unexpected or missing:
        example = (unexpected or missing)[0]
        raise AlignmentError(
            f"{adapter.weights_file} does not fit this backbone: {len(unexpected)} tensors fit no module and "
            f"{len(missing)} adapted modules got none (e.g. {example}); {adapter.origin}"
        )
    return model.merge_and_unload().eval()
