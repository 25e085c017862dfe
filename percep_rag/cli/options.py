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
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_type_hints

import typer

from percep_rag.config import Pooling, Precision
from percep_rag.store.spec import DEFAULT_EDGE_PATH as DEFAULT_STORE

if TYPE_CHECKING:
    from percep_rag.config import EmbedderSpec
    from percep_rag.embedder import AlignedEmbedder
    from percep_rag.store import StoreSpec

BackboneOption = Annotated[str, typer.Option("--backbone", "-b", help="Backbone name (see `percep-rag models`).")]
WeightsOption = Annotated[
    str | None,
    typer.Option(
        help="Checkpoint file, 'random', or empty for the default weights found locally; for a dreamsim:<type> "
        "backbone the release folder (default: $PERCEP_RAG_WEIGHTS/dreamsim)."
    ),
]
#: A vector space of a collection.
SpaceName = Literal["aligned", "base"]
#: A vector space, or both side by side.
SpaceChoice = Literal["aligned", "base", "both"]
#: The largest count any integer option takes: numbers beyond it are usage errors, never overflows.
MAX_COUNT = 1_000_000


def parse_device(text: str) -> str:
    """``--device``: a device name (``gpu`` is not one: a usage error naming the accepted ones).

    >>> parse_device("CUDA:1")
    'cuda:1'
    """
    from percep_rag.devices import check_device_name
    from percep_rag.errors import ConfigError

    try:
        return check_device_name(text)
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None


def parse_alignment(text: str) -> str:
    """``--alignment``: ``identity``, ``glocal:<file>``, ``lora:<dir>`` or ``dreamsim`` (a path missing: usage error).

    >>> parse_alignment("glocal:t.safetensors")
    'glocal:t.safetensors'
    """
    from percep_rag.config import AlignmentSpec
    from percep_rag.errors import ConfigError

    try:
        return str(AlignmentSpec.parse(text))
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None


def parse_vlm(text: str) -> str:
    """``--vlm``: a spec some backend understands (a typo is a usage error listing the backends).

    >>> parse_vlm("smolvlm:/models/smol")
    'smolvlm:/models/smol'
    """
    from percep_rag.vlm.errors import VlmSpecError
    from percep_rag.vlm.registry import parse_vlm_spec

    try:
        parse_vlm_spec(text)
    except VlmSpecError as error:
        raise typer.BadParameter(str(error)) from None
    return text


PoolingOption = Annotated[Pooling, typer.Option(help="How patch tokens become one vector.")]
AlignmentOption = Annotated[
    str,
    typer.Option(
        parser=parse_alignment,
        help="'identity', 'glocal:<file>', 'lora:<dir>' or 'dreamsim' (a dreamsim:<type> backbone's released "
        "adapter, which it uses by default).",
    ),
]
DeviceOption = Annotated[str, typer.Option(parser=parse_device, help="'auto', 'cpu', 'cuda', 'cuda:1', ...")]
BatchOption = Annotated[int, typer.Option(min=1, max=MAX_COUNT, help="Images per forward pass.")]
WorkersOption = Annotated[int | None, typer.Option(min=0, max=1024, help="Decoding workers (default: by input size).")]
#: ``--using`` where one vector space is searched.
UsingOption = Annotated[SpaceName, typer.Option(help="Which vectors to search: the aligned or the base ones.")]
PrecisionOption = Annotated[
    Precision, typer.Option(help="'auto' (bf16 on CUDA and AMX/AVX-512 BF16 CPUs, else fp32), 'fp32' or 'bf16'.")
]
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar.")]
ProgressBarsOption = Annotated[bool, typer.Option(help="Show progress bars.")]

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
        parser=parse_vlm,
        help="'smolvlm:', 'idefics3:', 'qwen-vl:', 'gemma3:' or 'hf:' (family from the config) + <dir or hub id> "
        "(transformers, offline), 'openflamingo:<release>' (or a bare release name, e.g. OpenFlamingo-4B-vitl-rpj3b); "
        "test models: tiny-smolvlm-random, tiny-qwen2.5-vl-random, tiny-qwen3-vl-random, tiny-gemma3-random, "
        "tiny-flamingo-random."
    ),
]
VlmCheckpointOption = Annotated[str | None, typer.Option(help="OpenFlamingo only: the release's checkpoint.pt.")]
VlmLangOption = Annotated[
    str | None, typer.Option(help="OpenFlamingo only: local folder of the language model and its tokenizer.")
]
VlmVisionOption = Annotated[
    str | None, typer.Option(help="OpenFlamingo only: CLIP ViT-L/14 weights file for the vision encoder.")
]
VlmImageTokensOption = Annotated[
    int | None,
    typer.Option(
        min=1, max=16384, help="Qwen-VL only (qwen-vl:, hf:): most LM tokens per image (default 256; resized)."
    ),
]


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
    vlm_max_image_tokens: VlmImageTokensOption = None

    def load(self, device: str, precision: str = "auto") -> Any:
        """The :class:`~percep_rag.vlm.FewShotVLM` on ``device``, computing in ``precision``."""
        from percep_rag.devices import resolve_device
        from percep_rag.vlm.registry import load_vlm

        return load_vlm(
            self.vlm,
            checkpoint=self.vlm_checkpoint,
            lang=self.vlm_lang,
            vision_weights=self.vlm_vision_weights,
            max_image_tokens=self.vlm_max_image_tokens,
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


#: Seconds a remote store gets to answer one command's request, retries included.
DEFAULT_TIMEOUT = 10.0
TimeoutOption = Annotated[
    float,
    typer.Option(min=0.1, max=3600.0, help="Seconds a remote store (http(s)://) may take to answer, retries included."),
]
# The ``--timeout`` of the command running now, for :func:`store_spec` (set and reset around the command).
_store_timeout: ContextVar[float | None] = ContextVar("percep_rag_store_timeout", default=None)


def with_store_timeout(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command that takes ``--store`` a ``--timeout`` option, which :func:`store_spec` applies.

    Commands without a ``store`` parameter are returned unchanged.

    >>> def command(store: str | None = None) -> float:
    ...     return store_spec(store or "http://127.0.0.1:6333").timeout
    >>> with_store_timeout(command)(store=None, timeout=2.5)
    2.5
    """
    signature = inspect.signature(command, eval_str=True)
    if "store" not in signature.parameters or "timeout" in signature.parameters:
        return command

    @functools.wraps(command)
    def run(*args: Any, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> Any:
        token = _store_timeout.set(timeout)
        try:
            return command(*args, **kwargs)
        finally:
            _store_timeout.reset(token)

    timeout = inspect.Parameter("timeout", inspect.Parameter.KEYWORD_ONLY, annotation=TimeoutOption, default=10.0)
    parameters = [*signature.parameters.values(), timeout]
    run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": signature.return_annotation}
    return run


def store_spec(text: str | None) -> StoreSpec:
    """``--store`` as a spec; without it ``$PERCEP_RAG_STORE``, else :data:`DEFAULT_STORE` as Qdrant Edge.

    The command's ``--timeout`` (see :func:`with_store_timeout`) bounds a remote store's answers.

    >>> store_spec(":memory:").kind
    'memory'
    """
    from percep_rag.store import StoreSpec

    spec = StoreSpec.parse(text) if text else StoreSpec.default()
    timeout = _store_timeout.get()
    return spec if timeout is None or spec.kind != "url" else spec.model_copy(update={"timeout": timeout})
