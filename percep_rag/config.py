"""Typed configuration: the specs that describe an embedder and its parts.

Specs are frozen pydantic models, so they can be hashed, compared, written to JSON and
read back. Example::

    >>> spec = EmbedderSpec(backbone="tiny-vit-random", pooling="cls+patchmean")
    >>> spec.alignment.kind
    'identity'
    >>> AlignmentSpec.parse("glocal:/tmp/t.safetensors").kind
    'glocal'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from percep_rag.devices import DeviceName
from percep_rag.errors import ConfigError, UnknownNameError

# Each set of allowed values is stated once, as a Literal type; the tuples are derived from it.
Pooling = Literal["cls", "cls+patchmean"]
Normalization = Literal["l2", "center+l2"]
Interpolation = Literal["bicubic", "bilinear"]
#: ``crop``: shorter side to ``resize_size``, then a centre crop; ``squash``: straight to a square.
ResizeMode = Literal["crop", "squash"]
#: Where a timm ViT branch reads its tokens: after the final norm, or the last block's output.
TokenSource = Literal["norm", "prenorm"]
#: ``torch.compile`` of the forward: ``auto`` on CUDA, and on CPU for jobs of 512+ images (AlignedEmbedder.compiled).
CompileMode = Literal["auto", "always", "never"]
#: What a model computes in: ``auto`` is bf16 on CUDA and on CPUs with AMX/AVX-512 BF16, fp32 elsewhere.
Precision = Literal["auto", "fp32", "bf16"]
AlignmentKind = Literal["identity", "glocal", "lora", "dreamsim"]
#: What a collection's text queries search (see :mod:`percep_rag.text_space`): nothing, the ``base``
#: vectors only, or ``base`` (the default) and ``aligned``.
TextQueries = Literal["none", "base", "base+aligned"]
POOLINGS: tuple[str, ...] = get_args(Pooling)
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)
RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)
TOKEN_SOURCES: tuple[str, ...] = get_args(TokenSource)
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: The alignment kinds, stated once (as :data:`AlignmentKind`); :mod:`percep_rag.alignment.factory` loads each.
ALIGNMENT_KINDS: tuple[str, ...] = get_args(AlignmentKind)
#: Kinds that take no path: none, and ``dreamsim`` (the adapter of the ``dreamsim:<type>`` backbone's release).
PATHLESS_ALIGNMENTS: tuple[str, ...] = ("identity", "dreamsim")
#: Ways to pick few-shot examples (and the kNN baselines) in the few-shot protocol.
FewShotMethod = Literal["aligned", "base", "random", "knn-aligned", "knn-base", "mmr-aligned", "mmr-base"]
FEWSHOT_METHODS: tuple[str, ...] = get_args(FewShotMethod)
#: How 0 shots are prompted: the query alone, or open_flamingo's eval (2 text-only demonstrations).
ZeroShotStyle = Literal["plain", "openflamingo"]
#: What the few-shot protocol runs when no methods are named (the MMR ones are opt-in).
DEFAULT_FEWSHOT_METHODS: tuple[str, ...] = FEWSHOT_METHODS[:5]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PreprocessSpec(_Frozen):
    """How an image becomes a square float tensor in [0, 1] for one backbone.

    ``resize="crop"`` resizes the shorter side to ``resize_size`` and centre-crops
    ``image_size`` (CLIP, timm); ``resize="squash"`` resizes straight to
    ``image_size`` x ``image_size`` without keeping the aspect ratio (DreamSim).
    Mean/std normalisation is not here: each backbone branch applies its own on the device.
    """

    image_size: int = Field(224, gt=0)
    resize: ResizeMode = "crop"
    resize_size: int | None = None
    interpolation: Interpolation = "bicubic"

    @model_validator(mode="after")
    def _check_sizes(self) -> PreprocessSpec:
        if self.resize_size is not None and self.resize_size < self.image_size:
            raise ValueError("resize_size must be >= image_size")
        return self

    @property
    def shorter_side(self) -> int:
        """Target length of the shorter side before the centre crop."""
        return self.resize_size or self.image_size


class AlignmentSpec(_Frozen):
    """Which human alignment an embedder applies.

    ``identity`` (none), ``glocal`` (an affine map read from ``path``), ``lora``
    (a LoRA adapter directory at ``path``, merged into the backbone) or ``dreamsim`` (no path:
    the released adapter of a ``dreamsim:<type>`` backbone, its default).
    """

    kind: AlignmentKind = "identity"
    path: Path | None = None

    @model_validator(mode="after")
    def _path_matches_kind(self) -> AlignmentSpec:
        if self.kind in PATHLESS_ALIGNMENTS and self.path is not None:
            raise ValueError(f"the {self.kind} alignment takes no path")
        if self.kind not in PATHLESS_ALIGNMENTS and self.path is None:
            raise ValueError(f"alignment {self.kind!r} needs a path")
        return self

    @classmethod
    def parse(cls, text: str | AlignmentSpec | None) -> AlignmentSpec:
        """Read ``identity``, ``glocal:<file>``, ``lora:<dir>`` or ``dreamsim``; an unknown kind lists the known ones.

        >>> AlignmentSpec.parse("lora:runs/ha").path
        PosixPath('runs/ha')
        >>> AlignmentSpec.parse("pca:x.npz")
        Traceback (most recent call last):
        ...
        percep_rag.errors.UnknownNameError: unknown alignment kind 'pca'; known alignment kinds: identity, glocal, ...
        """
        if text is None:
            return cls()
        if isinstance(text, AlignmentSpec):
            return text
        kind, sep, path = str(text).partition(":")
        kind = kind.strip().lower()
        if kind not in ALIGNMENT_KINDS:
            raise UnknownNameError("alignment kind", kind, list(ALIGNMENT_KINDS))
        if kind in PATHLESS_ALIGNMENTS:
            if path:
                raise ConfigError(f"the {kind} alignment takes no path")
            return cls(kind=kind)
        if not sep or not path:
            raise ConfigError(f"alignment {kind!r} needs a path: write '{kind}:<path>'")
        return cls(kind=kind, path=Path(path))

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


class EmbedderSpec(_Frozen):
    """Everything that defines an :class:`~percep_rag.embedder.AlignedEmbedder`.

    ``weights`` is ``None`` for the backbone's default pretrained weights (found locally,
    never downloaded), ``"random"`` for random initialisation, a pretrained tag known to
    open_clip, or a path to a checkpoint file. ``normalization=None`` takes the
    backbone's own default (``center+l2`` for the DreamSim ensemble, ``l2`` otherwise).
    ``precision`` is what the backbone computes in (see :mod:`percep_rag.precision`); it is
    not part of the fingerprint: bf16 and fp32 vectors agree within cosine 0.999.
    """

    backbone: str
    weights: str | None = None
    pooling: Pooling = "cls"
    alignment: AlignmentSpec = AlignmentSpec()
    normalization: Normalization | None = None
    device: DeviceName = "auto"
    batch_size: int = Field(64, gt=0)
    num_workers: int | None = Field(None, ge=0)
    amp: bool = True
    compile: CompileMode = "auto"
    precision: Precision = "auto"
    seed: int = 0

    @field_validator("alignment", mode="before")
    @classmethod
    def _parse_alignment(cls, value: object) -> object:
        if value is None or isinstance(value, str):
            return AlignmentSpec.parse(value)
        return value


class Fingerprint(_Frozen):
    """What identifies the vectors an embedder produces.

    Two embedders whose fingerprints are equal produce comparable vectors; the store
    refuses to mix vectors whose fingerprints differ. ``text_queries`` records what a text query
    of the collection searches (:mod:`percep_rag.text_space`); it follows from the backbone,
    pooling and alignment, so it describes rather than identifies (``differences`` skips it), and
    a collection written before it was recorded reads as ``None``.
    """

    backbone: str
    weights_digest: str
    random_weights: bool
    pooling: Pooling
    normalization: Normalization
    alignment: str
    alignment_digest: str
    base_dim: int
    dim: int
    distance: Literal["cosine"] = "cosine"
    text_queries: TextQueries | None = None

    def differences(self, other: Fingerprint) -> list[str]:
        """Human-readable list of the fields that differ, ``[]`` when equal.

        >>> a = Fingerprint(backbone="x", weights_digest="1", random_weights=True, pooling="cls",
        ...     normalization="l2", alignment="identity", alignment_digest="-", base_dim=8, dim=8)
        >>> a.differences(a.model_copy(update={"dim": 16}))
        ['dim: 8 != 16']
        """
        mine, theirs = self.model_dump(exclude={"text_queries"}), other.model_dump(exclude={"text_queries"})
        return [f"{key}: {mine[key]} != {theirs[key]}" for key in mine if mine[key] != theirs[key]]
