"""Backbones: CLIP/OpenCLIP (open_clip), DINO/DINOv2 (timm), ensembles, tiny test models.

>>> from percep_rag.backbones import create_backbone, list_backbones
>>> create_backbone("tiny-ensemble-random").dim
128
"""

from percep_rag.backbones import catalog as _catalog  # noqa: F401  (registers the entries)
from percep_rag.backbones.base import Backbone, Branch, NetworkCfg, TokenFeatures, state_digest
from percep_rag.backbones.dreamsim_release import register_releases as _register_releases
from percep_rag.backbones.registry import (
    BackboneEntry,
    add_backbone,
    create_backbone,
    get_backbone_entry,
    list_backbones,
    register_backbone,
    register_ensemble,
    weights_present,
)
from percep_rag.backbones.weights import resolve_weights, weights_dir

_register_releases()  # DreamSim's released models: dreamsim:ensemble, dreamsim:dino_vitb16, ...

__all__ = [
    "Backbone",
    "BackboneEntry",
    "Branch",
    "NetworkCfg",
    "TokenFeatures",
    "add_backbone",
    "create_backbone",
    "get_backbone_entry",
    "list_backbones",
    "register_backbone",
    "register_ensemble",
    "resolve_weights",
    "state_digest",
    "weights_dir",
    "weights_present",
]
