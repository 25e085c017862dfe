"""The backbone registry: ``create_backbone(name)`` and ``list_backbones()``.

Each entry is a :class:`BackboneEntry` that knows how to build the backbone and where its
pretrained weights are looked for. Factories are registered with
:func:`register_backbone`, in the style of ``timm`` and ``open_clip``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from percep_rag.backbones.base import Backbone
from percep_rag.backbones.weights import HubFile, local_weight_file
from percep_rag.errors import ConfigError, UnknownBackboneError

#: ``factory(checkpoint, seed)``: ``checkpoint`` is a resolved local file, or ``None`` for random weights.
BackboneFactory = Callable[[Path | None, int], Backbone]
#: ``compose(parts)``: builds an ensemble from its already-loaded part backbones.
EnsembleComposer = Callable[[list[Backbone]], Backbone]


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone: its factory plus facts for ``percep-rag models``."""

    name: str
    factory: BackboneFactory | None
    family: str
    description: str
    #: Where pretrained weights live on the Hub; ``None`` for random-only or composite entries.
    hub: HubFile | None = None
    #: Ensembles: the registered backbones it is made of, and how to combine them.
    parts: tuple[str, ...] = ()
    compose: EnsembleComposer | None = None
    #: True for the tiny test models, which only ever have random weights.
    random_only: bool = False
    #: The upstream identity: (open_clip model, pretrained tag) or (timm model name, "").
    source: tuple[str, str] | None = None


class BackboneRegistry:
    """Name -> :class:`BackboneEntry`; one instance, ``REGISTRY``, is filled at import time."""

    def __init__(self) -> None:
        self._entries: dict[str, BackboneEntry] = {}

    def add(self, entry: BackboneEntry) -> None:
        if entry.name in self._entries:
            raise ConfigError(f"backbone {entry.name!r} is registered twice")
        self._entries[entry.name] = entry

    def get(self, name: str) -> BackboneEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownBackboneError(name, self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._entries)


REGISTRY = BackboneRegistry()


def register_ensemble(name: str, parts: tuple[str, ...], compose: EnsembleComposer, *, description: str) -> None:
    """Register a backbone made of other registered backbones (each loads its own weights)."""
    REGISTRY.add(
        BackboneEntry(name=name, factory=None, family="ensemble", description=description, parts=parts, compose=compose)
    )


def register_backbone(name: str, *, family: str, description: str, **facts) -> Callable:
    """Decorator that registers a factory under ``name``, for example::

    @register_backbone("my-vit", family="custom", description="my ViT", hub=HubFile("me/vit", ("model.safetensors",)))
    def build_my_vit(checkpoint: Path | None, seed: int) -> Backbone:
        branch = load_timm_branch("vit_small_patch16_224", checkpoint, image_size=224, seed=seed)
        return Backbone("my-vit", [branch], PreprocessSpec(), random_weights=checkpoint is None)

    """

    def decorator(factory: BackboneFactory) -> BackboneFactory:
        REGISTRY.add(BackboneEntry(name=name, factory=factory, family=family, description=description, **facts))
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Names of every registered backbone.

    >>> "tiny-vit-random" in list_backbones()
    True
    """
    return REGISTRY.names()


def get_backbone_entry(name: str) -> BackboneEntry:
    """The registry entry for ``name`` (raises :class:`UnknownBackboneError`)."""
    return REGISTRY.get(name)


def weights_present(name: str) -> bool:
    """Whether pretrained weights for ``name`` (every part, for an ensemble) are on this machine."""
    entry = REGISTRY.get(name)
    if entry.random_only:
        return True
    if entry.parts:
        return all(weights_present(part) for part in entry.parts)
    return local_weight_file(name) is not None or (entry.hub is not None and entry.hub.cached_path() is not None)


def create_backbone(
    name: str,
    weights: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Backbone:
    """Build a registered backbone in eval mode.

    ``weights``: ``None`` for the default pretrained weights (looked up locally, never
    downloaded; a miss raises :class:`~percep_rag.errors.WeightsNotFoundError` saying
    where to put the file), ``"random"`` for random initialisation from ``seed``, or the
    path of a checkpoint file.

    >>> backbone = create_backbone("tiny-clip-random")
    >>> backbone.random_weights, backbone.dim
    (True, 32)
    """
    from percep_rag.backbones.weights import resolve_weights

    entry = REGISTRY.get(name)
    if entry.compose is not None:
        if weights not in (None, "random"):
            raise ConfigError(
                f"{name!r} is an ensemble of {', '.join(entry.parts)}; its weights are found per "
                "part, so pass weights=None (pretrained) or 'random'"
            )
        parts = [create_backbone(part, weights, seed=seed + index) for index, part in enumerate(entry.parts)]
        return entry.compose(parts).to(device).eval()
    if entry.random_only or weights == "random":
        checkpoint = None
    else:
        checkpoint = resolve_weights(name, weights, entry.hub)
    return entry.factory(checkpoint, seed).to(device).eval()
