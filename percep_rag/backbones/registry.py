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
from typing import NamedTuple, Protocol

import torch

from percep_rag.backbones import openclip, timm_vit
from percep_rag.backbones.base import Backbone, Branch, NetworkCfg
from percep_rag.backbones.checkpoints import WeightsFileError, checkpoint_shapes, likeness, weights_file_problem
from percep_rag.backbones.weights import (
    HubFile,
    local_weight_file,
    missing_parts_message,
    resolve_weights,
    weights_dir,
)
from percep_rag.config import Normalization, PreprocessSpec, TokenSource
from percep_rag.errors import ConfigError, PercepRagError, UnknownBackboneError, WeightsNotFoundError
from percep_rag.registry import Registry

#: ``factory(checkpoint, seed)``: ``checkpoint`` is a resolved local file, or ``None`` for random weights.
BackboneFactory = Callable[[Path | None, int], Backbone]
#: ``compose(parts)``: builds an ensemble from its already-loaded part backbones.
EnsembleComposer = Callable[[list[Backbone]], Backbone]


class OwnFiles(Protocol):
    """A backbone that finds and reads its own files (a DreamSim release folder), not one checkpoint file."""

    #: The dimension of its base vectors' tokens.
    dim: int

    def build(self, weights: str | Path | None, seed: int) -> Backbone:
        """The backbone; ``weights`` is its folder (``None``: the default place)."""

    def status(self) -> str:
        """``present``, ``missing`` or what is wrong (for ``percep-rag models``)."""

    def expected_files(self) -> list[str]:
        """Where its files are looked for."""


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
    #: Backbones that read a folder of their own (DreamSim's releases, :mod:`~percep_rag.backbones.dreamsim_release`).
    own_files: OwnFiles | None = None

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
    makers = [entry.network is not None, bool(entry.parts), entry.factory is not None, entry.own_files is not None]
    if makers.count(True) != 1:
        raise ConfigError(f"backbone {entry.name!r} needs exactly one of a network, parts, a factory or own files")
    if entry.factory is None and entry.own_files is None and entry.preprocess is None:
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
    if entry.own_files is not None:
        return entry.own_files.status() == "present"
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
    if entry.own_files is not None:
        return entry.own_files.build(weights, seed)
    if entry.parts:
        return _build_ensemble(entry, weights, seed)
    if entry.random_only and weights not in (None, "random"):
        raise ConfigError(f"{entry.name!r} is a test model with random weights only; it takes no weights file")
    checkpoint = None if entry.random_only or weights == "random" else resolve_weights(entry.name, weights, entry.hub)
    if checkpoint is not None and (problem := weights_file_problem(checkpoint)) is not None:
        raise WeightsFileError(f"weights file {checkpoint} for backbone {entry.name!r} cannot be loaded: {problem}")
    if entry.factory is not None:
        return entry.factory(checkpoint, seed)
    network = entry.network
    library = LIBRARIES.get(network.library)
    if network.mean is None or network.std is None:
        mean, std = library.pixel_stats(network)
        network = replace(network, mean=network.mean or mean, std=network.std or std)
    if token_source is not None and network.library == "timm":
        network = replace(network, token_source=token_source)
    try:
        branch = library.build(network, checkpoint, seed=seed, image_size=entry.preprocess.image_size)
    except (RuntimeError, KeyError, ValueError) as error:  # a checkpoint of another network (upstream's words)
        if checkpoint is None or isinstance(error, PercepRagError):
            raise
        raise WeightsFileError(_misfit_message(entry, checkpoint, error)) from error
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
    if weights is None:  # name every part whose weights are missing at once, not the first one only
        missing = {part: REGISTRY.get(part).hub for part in entry.parts if not weights_present(part)}
        if missing:
            raise WeightsNotFoundError(missing_parts_message(entry.name, missing))
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


def network_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a registered single-network backbone (``{}`` for others), built on
    the ``meta`` device: no memory and no weights needed.

    >>> network_shapes("tiny-vit-random")["cls_token"]
    (1, 1, 64)
    """
    entry = REGISTRY.get(name)
    if entry.network is None:
        return {}
    branch = _meta_branch(entry)
    module = getattr(branch, "visual", None) or getattr(branch, "model", branch)
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def _misfit_message(entry: BackboneEntry, checkpoint: Path, error: Exception) -> str:
    """One line for a checkpoint that does not load into ``entry``: which network it looks like."""
    try:
        found = checkpoint_shapes(checkpoint)
        others = {name: network_shapes(name) for name in list_backbones() if name != entry.name}
        detail = likeness(found, entry.name, network_shapes(entry.name), others)
    except Exception:  # noqa: BLE001 - the description is a courtesy; the upstream words still say why
        detail = str(error).strip().splitlines()[0][:200]
    return f"weights file {checkpoint} does not fit backbone {entry.name!r}: {detail}"


def _meta_branch(entry: BackboneEntry) -> Branch:
    network = replace(entry.network, mean=entry.network.mean or (0.0,) * 3, std=entry.network.std or (1.0,) * 3)
    if network.library == "open_clip":  # open_clip moves the model to its `device` argument (cpu by default)
        network = replace(network, model_args={**network.model_args, "device": "meta"})
    with torch.device("meta"):
        return LIBRARIES.get(network.library).build(network, None, seed=0, image_size=entry.preprocess.image_size)


def backbone_dim(name: str) -> int | None:
    """The dimension of a backbone's base vectors, from its architecture alone (no weights, no memory).

    ``None`` for code-built backbones, whose dimension is known only once built.

    >>> backbone_dim("tiny-ensemble-random")
    128
    """
    entry = REGISTRY.get(name)
    if entry.own_files is not None:
        return entry.own_files.dim
    if entry.network is not None:
        return _meta_branch(entry).dim
    if entry.parts and entry.compose is None:
        dims = [backbone_dim(part) for part in entry.parts]
        return None if None in dims else sum(dims)  # type: ignore[arg-type]
    return None


def weights_status(name: str) -> str:
    """``random (test model)``, ``present``, ``missing`` or ``unreadable: <why>`` (headers are read, not loaded).

    >>> weights_status("tiny-vit-random")
    'random (test model)'
    """
    entry = REGISTRY.get(name)
    if entry.random_only or (entry.parts and all(REGISTRY.get(part).random_only for part in entry.parts)):
        return "random (test model)"
    if entry.own_files is not None:
        return entry.own_files.status()
    if entry.parts:
        statuses = {part: weights_status(part) for part in entry.parts}
        bad = [
            f"{part} {status}" for part, status in statuses.items() if status not in ("present", "random (test model)")
        ]
        return (
            "present" if not bad else ("missing" if all(s == "missing" for s in statuses.values()) else "; ".join(bad))
        )
    found = local_weight_file(name) or (entry.hub.cached_path() if entry.hub is not None else None)
    if found is None:
        return "missing"
    problem = weights_file_problem(found)
    return "present" if problem is None else f"unreadable: {problem}"


def expected_files(name: str) -> list[str]:
    """Where the weights of ``name`` are looked for: ``<weights_dir>/<name>.safetensors`` (each part's, for an
    ensemble) and the Hugging Face repo and file.

    >>> expected_files("tiny-vit-random")
    []
    """
    entry = REGISTRY.get(name)
    if entry.random_only:
        return []
    if entry.own_files is not None:
        return entry.own_files.expected_files()
    if entry.parts:
        return [path for part in entry.parts for path in expected_files(part)]
    hub = entry.hub
    return [f"{weights_dir() / name}.safetensors"] + ([f"hf:{hub.repo_id}/{hub.filenames[0]}"] if hub else [])
