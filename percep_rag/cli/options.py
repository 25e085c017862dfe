"""Options shared by several commands, each declared once.

Options that travel together are a dataclass whose field types are the options:
:class:`EmbedderOptions` (backbone, weights, pooling, alignment, device, batch size) and
:class:`VlmOptions`. :func:`with_options` adds a group's options to a command, which
receives them as one value.

>>> EmbedderOptions(backbone="tiny-vit-random", weights="").spec().weights is None
True
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer

from percep_rag.config import Precision

if TYPE_CHECKING:
    from percep_rag.config import EmbedderSpec
    from percep_rag.embedder import AlignedEmbedder
    from percep_rag.store import StoreSpec

BackboneOption = Annotated[str, typer.Option("--backbone", "-b", help="Backbone name (see `percep-rag models`).")]
WeightsOption = Annotated[
    str | None, typer.Option(help="Checkpoint file, 'random', or empty for the default weights found locally.")
]
PoolingOption = Annotated[str, typer.Option(help="'cls' or 'cls+patchmean'.")]
AlignmentOption = Annotated[str, typer.Option(help="'identity', 'glocal:<file>' or 'lora:<dir>'.")]
DeviceOption = Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda', 'cuda:1', ...")]
BatchOption = Annotated[int, typer.Option(min=1, help="Images per forward pass.")]
PrecisionOption = Annotated[
    Precision, typer.Option(help="'auto' (bf16 on CUDA and AMX/AVX-512 BF16 CPUs, else fp32), 'fp32' or 'bf16'.")
]
WorkersOption = Annotated[int | None, typer.Option(min=0, help="Decoding workers (default: by input size).")]
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar.")]
ProgressBarsOption = Annotated[bool, typer.Option(help="Show progress bars.")]

#: Where the store lives when neither ``--store`` nor ``$PERCEP_RAG_STORE`` says.
DEFAULT_STORE = Path("~/.cache/percep_rag/store")
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="edge:<dir>, a directory, :memory:, local:<dir> or http(s)://host:6333 "
        f"(default: $PERCEP_RAG_STORE, else {DEFAULT_STORE} as Qdrant Edge).",
    ),
]
CollectionOption = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
FilterOption = Annotated[
    list[str] | None, typer.Option("--filter", help="key=value or key=v1,v2 (any of); repeatable, all must hold.")
]

VlmOption = Annotated[
    str,
    typer.Option(
        help="'tiny-flamingo-random' (test model) or a released OpenFlamingo, e.g. OpenFlamingo-4B-vitl-rpj3b."
    ),
]
VlmCheckpointOption = Annotated[str | None, typer.Option(help="The release's checkpoint.pt.")]
VlmLangOption = Annotated[str | None, typer.Option(help="Local folder of the language model and its tokenizer.")]
VlmVisionOption = Annotated[str | None, typer.Option(help="CLIP ViT-L/14 weights file for the vision encoder.")]


@dataclass(frozen=True)
class EmbedderOptions:
    """The embedder options as given on the command line; each field's type is its option."""

    backbone: BackboneOption = "dreamsim-ensemble"
    weights: WeightsOption = None
    pooling: PoolingOption = "cls"
    alignment: AlignmentOption = "identity"
    device: DeviceOption = "auto"
    batch_size: BatchOption = 64
    precision: PrecisionOption = "auto"

    def spec(self, **extra: Any) -> EmbedderSpec:
        """The :class:`~percep_rag.config.EmbedderSpec`; an empty ``--weights`` means the default weights."""
        from percep_rag.config import EmbedderSpec

        return EmbedderSpec(
            backbone=self.backbone,
            weights=self.weights or None,
            pooling=self.pooling,
            alignment=self.alignment,
            device=self.device,
            batch_size=self.batch_size,
            precision=self.precision,
            **extra,
        )

    def build(self, **extra: Any) -> AlignedEmbedder:
        """The embedder these options describe."""
        from percep_rag.embedder import AlignedEmbedder

        return AlignedEmbedder.from_spec(self.spec(**extra))


@dataclass(frozen=True)
class VlmOptions:
    """The vision-language model options as given on the command line."""

    vlm: VlmOption = "tiny-flamingo-random"
    vlm_checkpoint: VlmCheckpointOption = None
    vlm_lang: VlmLangOption = None
    vlm_vision_weights: VlmVisionOption = None

    def load(self, device: str, precision: str = "auto") -> Any:
        """The :class:`~percep_rag.fewshot.classify.FewShotClassifier` on ``device``, computing in ``precision``."""
        from percep_rag.devices import resolve_device
        from percep_rag.fewshot.evaluate import load_vlm

        return load_vlm(
            self.vlm,
            checkpoint=self.vlm_checkpoint,
            lang=self.vlm_lang,
            vision_weights=self.vlm_vision_weights,
            device=str(resolve_device(device)),
            precision=precision,
        )


def with_options(group: type, *, without: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the options of ``group`` (a dataclass of options) in place of its parameter of that type.

    The fields become options at that parameter's place; those named in ``without`` are not
    offered and keep their defaults. The command is called with one ``group`` value.

    >>> @with_options(EmbedderOptions, without=("batch_size",))
    ... def command(query: str, *, embedder: EmbedderOptions) -> EmbedderOptions:
    ...     return embedder
    >>> list(inspect.signature(command).parameters)
    ['query', 'backbone', 'weights', 'pooling', 'alignment', 'device', 'precision']
    >>> command(query="q", backbone="tiny-vit-random").backbone
    'tiny-vit-random'
    """
    options = get_type_hints(group, include_extras=True)
    defaults = group()
    offered = [field.name for field in fields(group) if field.name not in without]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        [target] = [p.name for p in signature.parameters.values() if p.annotation is group] or [None]
        if target is None:
            raise TypeError(f"{command.__name__} has no {group.__name__} parameter to replace")
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name != target:
                parameters.append(parameter)
                continue
            parameters.extend(
                inspect.Parameter(name, parameter.kind, annotation=options[name], default=getattr(defaults, name))
                for name in offered
            )

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            chosen = {name: kwargs.pop(name) for name in offered if name in kwargs}
            return command(**kwargs, **{target: replace(defaults, **chosen)})

        # Typer reads the parameters from the signature; the annotations must be objects, not strings.
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": signature.return_annotation}
        return run

    return decorate


def store_spec(text: str | None) -> StoreSpec:
    """``--store`` as a spec; without it ``$PERCEP_RAG_STORE``, else :data:`DEFAULT_STORE` as Qdrant Edge.

    >>> store_spec(":memory:").kind
    'memory'
    """
    from percep_rag.store import StoreSpec

    return StoreSpec.parse(text) if text else StoreSpec.default()
