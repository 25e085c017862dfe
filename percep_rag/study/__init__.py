"""The perceptual-world study: a controlled world of shape scenes, a hidden "human" judge,
NIGHTS-style triplets, a semantic base ViT, and the run that asks whether alignment helps.

The real question (Sundaram et al. 2024, "When does perceptual alignment benefit vision
representations?") needs a backbone that knows *semantics* and humans who judge by
*mid-level perception*. Here both are explicit and separable:

* a scene (:class:`SceneSpec`) has 1-10 objects (shape, colour, size, position, rotation)
  on a textured background; its **semantic category** is the shape most of its objects
  have (a strict majority, by construction), and it has an object **count**, a spatial
  **layout** and an **instance id**;
* :func:`render` draws it with PIL; re-rendering with a ``jitter_seed`` moves, scales,
  rotates and recolours every object slightly: the same instance, different pixels;
* :class:`HumanJudge` compares scenes by count, spatial layout, colour distribution and
  background - never by shape - and votes like a noisy panel of people;
* :func:`make_nights_triplets` makes NIGHTS-like triplets (a reference and two
  distortions of it, all of the same category) with vote counts, which
  :meth:`SyntheticTriplets.write_nights` writes as a folder that
  :func:`~percep_rag.datasets.triplets.read_nights_csv` reads;
* :func:`train_semantic_backbone` trains the base that knows semantics, not perception
  (:mod:`~percep_rag.study.backbone`), and :func:`run_study` aligns it and scores every
  method (:mod:`~percep_rag.study.run`).

One job per module: ``scenes`` (descriptions), ``render``, ``sampling`` (random scenes),
``worlds``, ``judge``, ``distortions``, ``nights`` (triplet files), ``backbone``, ``run``;
and for the triplet-source ablation (the paper's Figure 8, :func:`run_ablation`):
``pixels`` (low-level distortions), ``lowlevel`` (BAPPS-like 2AFC folders), ``semantic``
(ImageNet-style class triplets, THINGS-style odd-one-out), ``kinds`` (the four kinds and
their file formats), ``ablation`` (the run) and ``ablation_report`` (table and figure).

Everything is a deterministic function of its seed:

>>> world = generate_world(4, seed=0)
>>> world == generate_world(4, seed=0), len(world), world.scenes[0].category in SHAPES
(True, 4, True)
>>> render(world.scenes[0], size=64).size
(64, 64)
"""

from percep_rag.study.ablation import AblationConfig, AblationResult, AblationSeed, run_ablation, run_ablation_seed
from percep_rag.study.ablation_report import ablation_table, draw_ablation
from percep_rag.study.backbone import (
    BACKBONE_NAME,
    ConvStemPatchEmbed,
    SemanticBackbone,
    SemanticBackboneConfig,
    load_semantic_backbone,
    load_semantic_model,
    train_semantic_backbone,
)
from percep_rag.study.distortions import EDITS, distort
from percep_rag.study.judge import HumanJudge
from percep_rag.study.kinds import TRIPLET_KINDS, TripletFiles, TripletKind
from percep_rag.study.lowlevel import make_bapps_triplets
from percep_rag.study.nights import SyntheticTriplets, make_nights_triplets
from percep_rag.study.pixels import PIXEL_DISTORTIONS, distort_pixels, pixel_distance
from percep_rag.study.render import render
from percep_rag.study.run import (
    LOWER_IS_BETTER,
    METHODS,
    SeedResult,
    StudyConfig,
    StudyResult,
    downstream_metrics,
    run_study,
    run_study_seed,
)
from percep_rag.study.sampling import sample_scene
from percep_rag.study.scenes import (
    BACKGROUND_COLOURS,
    LABEL_KINDS,
    LAYOUTS,
    MAX_OBJECTS,
    OBJECT_COLOURS,
    SHAPES,
    TEXTURES,
    LabelKind,
    SceneError,
    SceneObject,
    SceneSpec,
)
from percep_rag.study.semantic import ConceptJudge, make_class_triplets, make_things_triplets
from percep_rag.study.worlds import World, generate_world

__all__ = [
    "BACKBONE_NAME",
    "BACKGROUND_COLOURS",
    "EDITS",
    "LABEL_KINDS",
    "LAYOUTS",
    "LOWER_IS_BETTER",
    "MAX_OBJECTS",
    "METHODS",
    "OBJECT_COLOURS",
    "PIXEL_DISTORTIONS",
    "SHAPES",
    "TEXTURES",
    "TRIPLET_KINDS",
    "AblationConfig",
    "AblationResult",
    "AblationSeed",
    "ConceptJudge",
    "ConvStemPatchEmbed",
    "HumanJudge",
    "LabelKind",
    "SceneError",
    "SceneObject",
    "SceneSpec",
    "SeedResult",
    "SemanticBackbone",
    "SemanticBackboneConfig",
    "StudyConfig",
    "StudyResult",
    "SyntheticTriplets",
    "TripletFiles",
    "TripletKind",
    "World",
    "ablation_table",
    "distort",
    "distort_pixels",
    "downstream_metrics",
    "draw_ablation",
    "generate_world",
    "load_semantic_backbone",
    "load_semantic_model",
    "make_bapps_triplets",
    "make_class_triplets",
    "make_nights_triplets",
    "make_things_triplets",
    "pixel_distance",
    "render",
    "run_ablation",
    "run_ablation_seed",
    "run_study",
    "run_study_seed",
    "sample_scene",
    "train_semantic_backbone",
]
