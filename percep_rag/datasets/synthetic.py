"""Moved to :mod:`percep_rag.study` (scenes, render, sampling, worlds, judge, distortions,
nights); this path keeps working."""

from percep_rag.study.distortions import EDITS as EDITS
from percep_rag.study.distortions import distort as distort
from percep_rag.study.judge import HumanJudge as HumanJudge
from percep_rag.study.nights import SyntheticTriplets as SyntheticTriplets
from percep_rag.study.nights import make_nights_triplets as make_nights_triplets
from percep_rag.study.render import render as render
from percep_rag.study.sampling import sample_scene as sample_scene
from percep_rag.study.scenes import BACKGROUND_COLOURS as BACKGROUND_COLOURS
from percep_rag.study.scenes import LABEL_KINDS as LABEL_KINDS
from percep_rag.study.scenes import LAYOUTS as LAYOUTS
from percep_rag.study.scenes import MAX_OBJECTS as MAX_OBJECTS
from percep_rag.study.scenes import OBJECT_COLOURS as OBJECT_COLOURS
from percep_rag.study.scenes import SHAPES as SHAPES
from percep_rag.study.scenes import TEXTURES as TEXTURES
from percep_rag.study.scenes import LabelKind as LabelKind
from percep_rag.study.scenes import SceneError as SceneError
from percep_rag.study.scenes import SceneObject as SceneObject
from percep_rag.study.scenes import SceneSpec as SceneSpec
from percep_rag.study.worlds import World as World
from percep_rag.study.worlds import generate_world as generate_world

__all__ = [
    "BACKGROUND_COLOURS",
    "EDITS",
    "LABEL_KINDS",
    "LAYOUTS",
    "MAX_OBJECTS",
    "OBJECT_COLOURS",
    "SHAPES",
    "TEXTURES",
    "HumanJudge",
    "LabelKind",
    "SceneError",
    "SceneObject",
    "SceneSpec",
    "SyntheticTriplets",
    "World",
    "distort",
    "generate_world",
    "make_nights_triplets",
    "render",
    "sample_scene",
]
