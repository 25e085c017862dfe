"""The backbone registry: ``create_backbone(name)`` and ``list_backbones()``.

Each entry is a :class:`BackboneEntry`: data that says which network(s) to build and how
their pixels are prepared (geometry in ``preprocess``, mean/std in each
:class:`~percep_rag.backbones.base.NetworkCfg`), in the style of timm's ``PretrainedCfg``.
Ensembles list their parts by name. Code-built backbones can still be registered with
:func:`register_backbone`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch

from percep_rag.backbones import openclip, timm_vit
from percep_rag.backbones.base import Backbone, Branch, NetworkCfg
from percep_rag.backbones.weights import HubFile, local_weight_file, resolve_weights
from percep_rag.config import Normalization, PreprocessSpec, TokenSource
from percep_rag.errors import ConfigError, UnknownBackboneError
from percep_rag.registry import Registry

#: ``factory(checkpoint, seed)``: ``checkpoint`` is a resolved local file, or ``None`` for random weights.
BackboneFactory = Callable[[Path | None, int], Backbone]
#: ``compose(parts)``: builds an ensemble from its already-loaded part backbones.
EnsembleComposer = Callable[[list[Backbone]], Backbone]


class NetworkLibrary(NamedTuple):
    """What percep-rag asks of an upstream library about a :class:`NetworkCfg`."""

    #: ``build(network, checkpoint, seed=, image_size=)``: the branch, ``network``'s mean/std filled in.
    build: Callable[..., Branch]
    #: Where the pretrained weights are published.
    hub: Callable[[NetworkCfg], HubFile]
    #: The (mean, std) the pretrained weights expect.
    pixel_stats: Callable[[NetworkCfg], tuple[tuple[float, ...], tuple[float, ...]]]


LIBRARIES: Registry[NetworkLibrary] = Registry("network library")
LIBRARIES.register("open_clip", NetworkLibrary(openclip.build_branch, openclip.hub_file, openclip.pixel_stats))
LIBRARIES.register("timm", NetworkLibrary(timm_vit.build_branch, timm_vit.hub_file, timm_vit.pixel_stats))


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone, as data: one ``network``, ensemble ``parts``, or a code ``factory``.

    >>> entry = get_backbone_entry("dreamsim-ensemble")
    >>> entry.parts, entry.token_source, entry.preprocess.resize
    (('dino-vit-b-16', 'clip-vit-b-16', 'openclip-vit-b-16'), 'prenorm', 'squash')
    """

    name: str
    family: str
    description: str
    #: The geometry every branch shares (ignored for ``factory`` entries, whose backbone carries it).
    preprocess: PreprocessSpec | None = None
    #: The one network of a single-network backbone.
    network: NetworkCfg | None = None
    #: Ensembles: the registered backbones whose branches are concatenated, in order.
    parts: tuple[str, ...] = ()
    #: Ensembles: where their timm ViT parts read tokens (DreamSim reads DINO's CLS before the final norm).
    token_source: TokenSource | None = None
    default_normalization: Normalization = "l2"
    #: True for the tiny test models, which only ever have random weights.
    random_only: bool = False
    #: Where pretrained weights live on the Hub when no ``network`` says it (code-built entries).
    hub_file: HubFile | None = None
    #: Code-built backbones (:func:`register_backbone`) and ensembles (:func:`register_ensemble` with ``compose``).
    factory: BackboneFactory | None = None
    compose: EnsembleComposer | None = None

    @property
    def hub(self) -> HubFile | None:
        """Where the pretrained weights are published (from the library's pretrained config)."""
        if self.hub_file is not None or self.network is None or self.random_only:
            return self.hub_file
        return LIBRARIES.get(self.network.library).hub(self.network)

    @property
    def source(self) -> tuple[str, str] | None:
        """The upstream identity: (open_clip model, pretrained tag) or (timm model name, "")."""
        return None if self.network is None else (self.network.model, self.network.tag)


REGISTRY: Registry[BackboneEntry] = Registry("backbone", error=UnknownBackboneError)


def add_backbone(entry: BackboneEntry) -> BackboneEntry:
    """Register ``entry`` under its name (a name registered twice is a :class:`ConfigError`)."""
    if [entry.network is not None, bool(entry.parts), entry.factory is not None].count(True) != 1:
        raise ConfigError(f"backbone {entry.name!r} needs exactly one of a network, parts or a factory")
    if entry.factory is None and entry.preprocess is None:
        raise ConfigError(f"backbone {entry.name!r} needs its preprocessing")
    REGISTRY.register(entry.name, entry)
    return entry


def register_ensemble(
    name: str,
    parts: tuple[str, ...],
    compose: EnsembleComposer | None = None,
    *,
    description: str,
    preprocess: PreprocessSpec | None = None,
    token_source: TokenSource | None = None,
    default_normalization: Normalization = "l2",
) -> None:
    """Register a backbone made of other registered backbones (each loads its own weights).

    Either give the shared ``preprocess`` (the parts' branches are concatenated) or a
    ``compose`` function that builds the ensemble from the loaded parts.
    """
    if compose is None and preprocess is None:
        raise ConfigError(f"ensemble {name!r} needs its preprocessing or a compose function")
    add_backbone(
        BackboneEntry(
            name=name,
            family="ensemble",
            description=description,
            preprocess=preprocess,
            parts=tuple(parts),
            token_source=token_source,
            default_normalization=default_normalization,
            compose=compose,
        )
    )


def register_backbone(name: str, *, family: str, description: str, hub: HubFile | None = None, **facts) -> Callable:
    """Decorator that registers a code-built backbone ``factory(checkpoint, seed)`` under ``name``.

    Backbones that are one open_clip or timm network are better registered as data
    (:func:`add_backbone` with a :class:`NetworkCfg`).
    """

    def decorator(factory: BackboneFactory) -> BackboneFactory:
        add_backbone(
            BackboneEntry(name=name, family=family, description=description, hub_file=hub, factory=factory, **facts)
        )
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Names of every registered backbone, sorted.

    >>> "tiny-vit-random" in list_backbones()
    True
    """
    return sorted(REGISTRY.names())


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
    return _build(REGISTRY.get(name), weights, seed, token_source=None).to(device).eval()


def _build(entry: BackboneEntry, weights: str | Path | None, seed: int, token_source: TokenSource | None) -> Backbone:
    if entry.parts:
        return _build_ensemble(entry, weights, seed)
    checkpoint = None if entry.random_only or weights == "random" else resolve_weights(entry.name, weights, entry.hub)
    if entry.factory is not None:
        return entry.factory(checkpoint, seed)
    network = entry.network
    library = LIBRARIES.get(network.library)
    if network.mean is None or network.std is None:
        mean, std = library.pixel_stats(network)
        network = replace(network, mean=network.mean or mean, std=network.std or std)
    if token_source is not None and network.library == "timm":
        network = replace(network, token_source=token_source)
    branch = library.build(network, checkpoint, seed=seed, image_size=entry.preprocess.image_size)
    return Backbone(
        entry.name,
        [branch],
        entry.preprocess,
        random_weights=checkpoint is None,
        default_normalization=entry.default_normalization,
        weights_source=str(checkpoint or "random"),
    )


def _build_ensemble(entry: BackboneEntry, weights: str | Path | None, seed: int) -> Backbone:
    if weights not in (None, "random"):
        raise ConfigError(
            f"{entry.name!r} is an ensemble of {', '.join(entry.parts)}; its weights are found per "
            "part, so pass weights=None (pretrained) or 'random'"
        )
    parts = [
        _build(REGISTRY.get(part), weights, seed + index, entry.token_source) for index, part in enumerate(entry.parts)
    ]
    if entry.compose is not None:
        return entry.compose(parts)
    return Backbone(
        entry.name,
        [branch for part in parts for branch in part.branches],
        entry.preprocess,
        random_weights=any(part.random_weights for part in parts),
        default_normalization=entry.default_normalization,
        weights_source="; ".join(f"{part.name}={part.weights_source}" for part in parts),
    )
