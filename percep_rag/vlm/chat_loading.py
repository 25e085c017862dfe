"""Loading SmolVLM / Idefics3 from a local folder or the Hugging Face cache, never from the network.

``target`` is a folder (``save_pretrained`` output, or a downloaded snapshot) or a hub id
(``HuggingFaceTB/SmolVLM-256M-Instruct``) looked up in the local HF cache with
``local_files_only=True``. A miss is one :class:`~percep_rag.vlm.errors.VlmNotFoundError`
saying where to put the files. A folder holding the marker file :data:`RANDOM_WEIGHTS_MARKER`
(written by :func:`~percep_rag.vlm.tiny_smolvlm.build_tiny_smolvlm`) loads labelled as random.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from percep_rag.config import Precision
from percep_rag.precision import resolve_precision
from percep_rag.vlm.errors import VlmNotFoundError, VlmSpecError
from percep_rag.vlm.smolvlm import SmolVlmClassifier

__all__ = [
    "RANDOM_WEIGHTS_MARKER",
    "SUPPORTED_MODEL_TYPES",
    "find_model_folder",
    "load_smolvlm",
    "without_progress_bars",
]

#: A file in a model folder saying its weights are random (test models): predictions are labelled so.
RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS"
#: transformers ``model_type``s this backend speaks (same prompt layout and processor tokens).
SUPPORTED_MODEL_TYPES = ("idefics3", "smolvlm")


def _missing_message(target: str, kind: str) -> str:
    from huggingface_hub import constants

    return (
        f"{kind} model {target!r} is not on this machine (percep-rag never downloads it): no such folder, and not "
        f"in the Hugging Face cache {constants.HF_HUB_CACHE}\n"
        f"on a machine with internet run `hf download {target}` and copy its cache folder "
        f"models--{target.replace('/', '--')} there (or set $HF_HOME), or download it to a folder and pass "
        f"--vlm {kind}:/path/to/folder; without weights use --vlm tiny-smolvlm-random"
    )


def find_model_folder(target: str, *, kind: str = "smolvlm") -> Path:
    """The local folder holding ``target``'s ``config.json``: the folder itself, or its HF cache snapshot.

    >>> find_model_folder("/nonexistent/smolvlm")
    Traceback (most recent call last):
    ...
    percep_rag.vlm.errors.VlmNotFoundError: smolvlm model folder /nonexistent/smolvlm does not exist
    """
    path = Path(target).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise VlmNotFoundError(f"{kind} model folder {path} has no config.json (a save_pretrained folder?)")
        return path
    looks_like_path = target.startswith((".", "/", "~")) or target.count("/") != 1 or path.exists()
    if looks_like_path:
        raise VlmNotFoundError(f"{kind} model folder {path} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(target, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        raise VlmNotFoundError(_missing_message(target, kind)) from None


def load_smolvlm(
    target: str,
    *,
    kind: str = "smolvlm",
    device: str = "cpu",
    precision: Precision = "auto",
    class_batch_size: int | None = None,
    normalize_length: bool = True,
    template: Any = None,
) -> SmolVlmClassifier:
    """A :class:`~percep_rag.vlm.smolvlm.SmolVlmClassifier` for ``target`` (folder or hub id, offline).

    >>> import tempfile
    >>> from percep_rag.vlm.tiny_smolvlm import build_tiny_smolvlm
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     load_smolvlm(str(build_tiny_smolvlm(folder)), precision="fp32").model.config.model_type
    'idefics3'
    """
    folder = find_model_folder(target, kind=kind)
    dtype = resolve_precision(precision, device)
    model, processor = _load_folder(folder, kind, dtype)
    model.to(device)
    return SmolVlmClassifier(
        model, processor, template, class_batch_size=class_batch_size, normalize_length=normalize_length,
        name=target, random_weights=(folder / RANDOM_WEIGHTS_MARKER).is_file(),
    )  # fmt: skip


def _load_folder(folder: Path, kind: str, dtype: Any) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    with without_progress_bars():
        return _load_quietly(folder, kind, dtype, AutoConfig, AutoModelForImageTextToText, AutoProcessor)


@contextmanager
def without_progress_bars() -> Iterator[None]:
    """transformers' own "Loading weights" bars, off for this load only (its setting is restored)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _load_quietly(folder: Path, kind: str, dtype: Any, AutoConfig, AutoModel, AutoProcessor) -> tuple[Any, Any]:  # noqa: N803
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise VlmNotFoundError(f"{kind} model folder {folder}: unreadable config ({error})") from None
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise VlmSpecError(
            f"{folder} holds a {config.model_type!r} model; the {kind} backend loads {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    try:
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=dtype)
    except ImportError as error:  # e.g. SmolVLMProcessor needs num2words
        raise VlmSpecError(f"loading {folder} needs a missing package: {error}") from None
    except OSError as error:
        raise VlmNotFoundError(f"{kind} model folder {folder} is incomplete: {error}") from None
    # One tile per image: a split image costs (rows x cols + 1) tiles of tokens, and 8+ shots must fit.
    processor.image_processor.do_image_splitting = False
    return model.eval(), processor
