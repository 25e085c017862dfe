"""A DreamSim release folder of RANDOM weights, written in the release's exact layout (tests, demos, benchmarks).

Every file is where DreamSim's zips and torch.hub put it and holds what they hold: the
"as DINO" CLIP checkpoints (``{'state_dict': {..., 'pos_drop.*', 'proj'}}``), SynCLR's
``{'model': {'module.visual.*'}}``, torch.hub's DINO/DINOv2 backbones under ``checkpoints/``
(DINOv2 at its 518-px grid), DINO's training checkpoint with the ``student`` head that
``dreamsim`` reads, and a peft adapter per type whose tensors are named for DreamSim's
``PerceptualModel`` (``base_model.model.extractor_list.<i>.model.blocks.<j>.attn.qkv.lora_A.weight``).
A marker file tells :func:`~percep_rag.backbones.dreamsim_release.load_release` the weights are random.

>>> import tempfile
>>> folder = write_random_release(tempfile.mkdtemp(), ["clip_vitb32"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch

from percep_rag.backbones.dreamsim_release import _vit
from percep_rag.backbones.dreamsim_types import BRANCHES, RANDOM_MARKER, RELEASE_TYPES, release_type

#: LoRA settings of DreamSim's configs: ``train_ensemble_model_lora.yaml`` and ``train_single_model_lora.yaml``.
ENSEMBLE_LORA = dict(r=16, lora_alpha=8, lora_dropout=0.3)
SINGLE_LORA = dict(r=16, lora_alpha=32, lora_dropout=0.2)


def _random_vit_state(model_type: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A random state dict of ``model_type``'s ViT-B, with DreamSim's (DINO-style) tensor names."""
    branch = BRANCHES[model_type]
    shapes = {name: tuple(tensor.shape) for name, tensor in _vit(branch.family, branch.patch_size).state_dict().items()}
    state = {}
    for name, shape in shapes.items():
        module = name.rsplit(".", 2)[-2] if name.count(".") else ""
        if module.startswith("norm") and name.endswith(".weight"):  # LayerNorm scales near 1
            state[name] = 1.0 + 0.05 * torch.randn(shape, generator=generator)
        elif name.endswith("gamma"):  # DINOv2's LayerScale
            state[name] = 0.5 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[name] = 0.02 * torch.randn(shape, generator=generator)
    if branch.family == "dinov2":  # torch.hub's file: 518 px (37 x 37 patches) and the mask token
        state["pos_embed"] = 0.02 * torch.randn(1, 1 + 37 * 37, 768, generator=generator)
        state["mask_token"] = torch.zeros(1, 768)
    if branch.family in ("clip", "open_clip"):  # DreamSim keeps ln_pre as `pos_drop`
        state = {("pos_drop." + k[len("norm_pre.") :] if k.startswith("norm_pre.") else k): v for k, v in state.items()}
    return state


def _write_base(folder: Path, model_type: str, generator: torch.Generator) -> None:
    branch = BRANCHES[model_type]
    path = folder / branch.files[0]
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    state = _random_vit_state(model_type, generator)
    if branch.family in ("clip", "open_clip"):
        proj = torch.randn(768, 512, generator=generator) * 768**-0.5
        torch.save({"state_dict": {**state, "proj": proj}}, path)
    elif branch.family == "synclr":
        torch.save({"model": {f"module.visual.{key}": value for key, value in state.items()}}, path)
    else:
        torch.save(state, path)
    if model_type == "dino_vitb16":  # dreamsim builds a DINO head from the zip's training checkpoint
        head = {
            "module.head.mlp.0.weight": (2048, 768), "module.head.mlp.0.bias": (2048,),
            "module.head.mlp.2.weight": (2048, 2048), "module.head.mlp.2.bias": (2048,),
            "module.head.mlp.4.weight": (256, 2048), "module.head.mlp.4.bias": (256,),
            "module.head.last_layer.weight": (2048, 256),
        }  # fmt: skip
        student = {key: 0.02 * torch.randn(shape, generator=generator) for key, shape in head.items()}
        torch.save({"student": student}, folder / "dino_vitb16_pretrain.pth")
    if model_type == "dinov2_vitb14":  # the zip's copy, which dreamsim checks for before it calls torch.hub
        top = folder / "dinov2_vitb14_pretrain.pth"
        if not top.exists():
            os.link(path, top)


def _write_adapter(folder: Path, name: str, generator: torch.Generator, scale: float) -> None:
    from safetensors.torch import save_file

    kind = release_type(name)
    adapter = folder / kind.adapter
    adapter.mkdir(parents=True, exist_ok=True)
    settings = ENSEMBLE_LORA if name == "ensemble" else SINGLE_LORA
    rank = settings["r"]
    tensors = {}
    for index in range(len(kind.model_types)):
        for block in range(12):
            stem = f"base_model.model.extractor_list.{index}.model.blocks.{block}.attn.qkv"
            tensors[f"{stem}.lora_A.weight"] = scale * torch.randn(rank, 768, generator=generator)
            tensors[f"{stem}.lora_B.weight"] = scale * torch.randn(3 * 768, rank, generator=generator)
    save_file(tensors, adapter / "adapter_model.safetensors")
    config = {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": None,
        "inference_mode": True,
        "bias": "none",
        "target_modules": ["qkv"],
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        **settings,
    }
    (adapter / "adapter_config.json").write_text(json.dumps(config, indent=2))


def write_random_release(
    folder: str | Path, types: Iterable[str] = ("ensemble",), *, seed: int = 0, adapter_scale: float = 0.1
) -> Path:
    """Write the files of each release type in ``types`` into ``folder`` (shared files once), RANDOM weights.

    ``adapter_scale`` is the std of the LoRA factors: 0.1 moves the vectors clearly away from the base ones.
    Real size (ViT-B), so about 350 MB per ViT-B branch on disk.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    for name in types:
        for model_type in RELEASE_TYPES[name].model_types if name in RELEASE_TYPES else release_type(name).model_types:
            _write_base(folder, model_type, generator)
        _write_adapter(folder, name, generator, adapter_scale)
    (folder / RANDOM_MARKER).write_text(json.dumps({"random_weights": True, "seed": seed}) + "\n")
    return folder
