"""Moved to :mod:`percep_rag.study.backbone`; this path keeps working."""

from percep_rag.study.backbone import BACKBONE_NAME as BACKBONE_NAME
from percep_rag.study.backbone import CONFIG_FILE as CONFIG_FILE
from percep_rag.study.backbone import FORMAT_VERSION as FORMAT_VERSION
from percep_rag.study.backbone import WEIGHTS_FILE as WEIGHTS_FILE
from percep_rag.study.backbone import ConvStemPatchEmbed as ConvStemPatchEmbed
from percep_rag.study.backbone import SemanticBackbone as SemanticBackbone
from percep_rag.study.backbone import SemanticBackboneConfig as SemanticBackboneConfig
from percep_rag.study.backbone import load_semantic_backbone as load_semantic_backbone
from percep_rag.study.backbone import load_semantic_model as load_semantic_model
from percep_rag.study.backbone import train_semantic_backbone as train_semantic_backbone

__all__ = [
    "BACKBONE_NAME",
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "ConvStemPatchEmbed",
    "SemanticBackbone",
    "SemanticBackboneConfig",
    "load_semantic_backbone",
    "load_semantic_model",
    "train_semantic_backbone",
]
