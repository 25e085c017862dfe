"""CLIP and OpenCLIP vision towers through ``open_clip``'s public API.

The branch returns CLIP's image embedding as the CLS feature (``ln_post(CLS) @ proj``,
exactly ``encode_image``) and the patch tokens through the same ``ln_post`` and
projection, so CLS and patches live in one space. The tokens come from open_clip's own
switch ``visual.output_tokens``; the tiny test towers are open_clip model configs
(``model_configs/*.json``) registered with ``open_clip.add_model_config``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from percep_rag.backbones._seed import build_seeded
from percep_rag.backbones.base import Branch, NetworkCfg, TokenFeatures, state_digest
from percep_rag.backbones.text import TextSource, TextTower, build_clip_model
from percep_rag.backbones.weights import HubFile
from percep_rag.errors import ConfigError
from percep_rag.quiet import without_log_records

# OpenAI's pixel statistics: the tiny towers' and the default for towers built by hand.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

#: The checkpoint file names open_clip publishes on the Hugging Face Hub.
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

#: percep-rag's own open_clip model configs, one JSON file per model (the name is the file's stem).
MODEL_CONFIGS = Path(__file__).with_name("model_configs")
TINY_CLIP = "percep-rag-tiny-clip"
TINY_OPENCLIP = "percep-rag-tiny-openclip"


class OpenClipBranch(Branch):
    """An ``open_clip`` ``VisionTransformer`` as a backbone branch (its ``output_tokens`` is switched on).

    >>> branch = load_openclip_branch(TINY_OPENCLIP, None)
    >>> branch(torch.rand(1, 3, 32, 32)).patches.shape
    torch.Size([1, 16, 32])
    """

    def __init__(self, visual: nn.Module, mean=OPENAI_MEAN, std=OPENAI_STD, *, text: TextSource | None = None):
        super().__init__(tuple(mean), tuple(std))
        from open_clip.transformer import VisionTransformer

        if not isinstance(visual, VisionTransformer):
            raise ConfigError(f"only open_clip VisionTransformer towers expose tokens, got {type(visual).__name__}")
        if visual.attn_pool is not None or visual.final_ln_after_pool or visual.pool_type != "tok":
            raise ConfigError("only CLS-token pooled open_clip ViTs are supported")
        visual.output_tokens = True  # open_clip's public switch: forward returns (pooled, tokens)
        self.visual = visual
        self.dim = visual.output_dim
        # Plain data, not a module: the text tower is built only when a text query needs it.
        self.text_source = text

    @property
    def has_text_tower(self) -> bool:
        return self.text_source is not None

    def text_tower(self, backbone: str) -> TextTower:
        import open_clip

        if self.text_source is None:
            return super().text_tower(backbone)
        register_model_configs()
        model = build_clip_model(self.text_source)
        # Built again from the same recipe: its image tower must be this one, or the text is another model's.
        if state_digest(model.visual) != state_digest(self.visual):
            raise ConfigError(f"the text tower built for {backbone!r} does not come with its image tower's weights")
        model.visual = None  # the image tower in use is this branch's own
        return TextTower(model, open_clip.get_tokenizer(self.text_source.model_name), backbone).eval()

    def lora_targets(self) -> list[str]:
        # open_clip blocks use nn.MultiheadAttention (fused in_proj), which peft adapts as a whole.
        return [name for name, module in self.named_modules() if isinstance(module, nn.MultiheadAttention)]

    def tokens(self, normalized: torch.Tensor) -> TokenFeatures:
        pooled, patches = self.visual(normalized)  # pooled is already projected, as in encode_image
        if self.visual.proj is not None:
            patches = patches @ self.visual.proj
        return TokenFeatures(cls=pooled, patches=patches)


def register_model_configs() -> None:
    """Make percep-rag's ``model_configs/*.json`` known to open_clip (a no-op once they are).

    >>> import open_clip
    >>> register_model_configs()
    >>> TINY_CLIP in open_clip.list_models()
    True
    """
    import open_clip

    known = set(open_clip.list_models())
    if any(path.stem not in known for path in MODEL_CONFIGS.glob("*.json")):
        open_clip.add_model_config(MODEL_CONFIGS)


def pretrained_cfg(network: NetworkCfg) -> dict:
    """open_clip's pretrained config for ``(network.model, network.tag)``: hub repo, mean, std...

    >>> pretrained_cfg(NetworkCfg("open_clip", "ViT-L-14", "laion2b_s32b_b82k"))["mean"]
    (0.5, 0.5, 0.5)
    """
    import open_clip

    cfg = open_clip.get_pretrained_cfg(network.model, network.tag)
    if not cfg:
        raise ConfigError(f"open_clip has no pretrained config {network.model!r} / {network.tag!r}")
    return cfg


def hub_file(network: NetworkCfg) -> HubFile:
    """Where open_clip publishes the weights of ``network`` on the Hugging Face Hub.

    >>> hub_file(NetworkCfg("open_clip", "ViT-B-16-quickgelu", "openai")).repo_id
    'timm/vit_base_patch16_clip_224.openai'
    """
    return HubFile(pretrained_cfg(network)["hf_hub"].rstrip("/"), OPEN_CLIP_FILES)


def pixel_stats(network: NetworkCfg) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std ``network`` was trained with, from open_clip's pretrained config."""
    cfg = pretrained_cfg(network)
    return tuple(cfg["mean"]), tuple(cfg["std"])


def build_branch(network: NetworkCfg, checkpoint: Path | None, *, seed: int, image_size: int) -> OpenClipBranch:
    """The branch ``network`` (with its mean/std filled in) describes, for ``image_size`` pixels."""
    branch = load_openclip_branch(
        network.model, checkpoint, seed=seed, mean=network.mean, std=network.std, **network.model_args
    )
    if branch.visual.image_size != (image_size, image_size):
        raise ConfigError(f"{network.model} takes {branch.visual.image_size} images, the entry says {image_size}")
    return branch


def load_openclip_branch(
    model_name: str, checkpoint: Path | None, *, seed: int = 0, mean=OPENAI_MEAN, std=OPENAI_STD, **model_args
) -> OpenClipBranch:
    """Build an open_clip model (``checkpoint=None``: random weights) and keep its vision tower.

    ``model_args`` go to ``open_clip.create_model`` (e.g. ``force_image_size``).

    >>> load_openclip_branch("ViT-B-32", None).dim   # random weights
    512
    """
    import open_clip

    register_model_configs()

    def build() -> nn.Module:
        return open_clip.create_model(model_name, pretrained=str(checkpoint) if checkpoint else None, **model_args)

    if checkpoint is None:  # random weights were asked for: open_clip's "no pretrained weights" warning is noise
        with without_log_records("No pretrained weights loaded"):
            model = build_seeded(build, seed)
    else:
        model = build_seeded(build, seed)
    text = TextSource(model_name, checkpoint, seed, dict(model_args))
    return OpenClipBranch(model.visual, mean=mean, std=std, text=text)


def tiny_openclip_branch(*, quick_gelu: bool, seed: int, image_size: int = 32) -> OpenClipBranch:
    """A two-layer open_clip ViT with random weights (``model_configs/percep-rag-tiny-*.json``)."""
    model_name = TINY_CLIP if quick_gelu else TINY_OPENCLIP
    return load_openclip_branch(model_name, None, seed=seed, force_image_size=image_size)
