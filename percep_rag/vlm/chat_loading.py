"""Loading a transformers chat VLM from a local folder or the Hugging Face cache, never from the network.

``target`` is a folder (``save_pretrained`` output, or a downloaded snapshot) or a hub id
(``HuggingFaceTB/SmolVLM-256M-Instruct``, ``Qwen/Qwen2.5-VL-3B-Instruct``,
``google/gemma-3-4b-it``) looked up in the local HF cache with ``local_files_only=True``. A
miss is one :class:`~percep_rag.vlm.errors.VlmNotFoundError` saying where to put the files.
The checkpoint's ``config.model_type`` picks its family (:mod:`percep_rag.vlm.architectures`);
a backend named for one family refuses another's checkpoint. A folder holding the marker file
:data:`RANDOM_WEIGHTS_MARKER` (the tiny test models write it) loads labelled as random.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from percep_rag.config import Precision
from percep_rag.precision import resolve_precision
from percep_rag.vlm.architectures import (
    CHAT_ARCHITECTURES,
    ChatArchitecture,
    ImageBudget,
    architecture_for_model_type,
)
from percep_rag.vlm.chat_scorer import ChatVlmClassifier
from percep_rag.vlm.errors import VlmNotFoundError, VlmSpecError

__all__ = [
    "RANDOM_WEIGHTS_MARKER",
    "find_model_folder",
    "load_chat_vlm",
    "save_random_model",
    "without_progress_bars",
]

#: A file in a model folder saying its weights are random (test models): predictions are labelled so.
RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS"


def _missing_message(target: str, kind: str) -> str:
    from huggingface_hub import constants

    return (
        f"{kind} model {target!r} is not on this machine (percep-rag never downloads it): no such folder, and not "
        f"in the Hugging Face cache {constants.HF_HUB_CACHE}\n"
        f"on a machine with internet run `hf download {target}` and copy its cache folder "
        f"models--{target.replace('/', '--')} there (or set $HF_HOME), or download it to a folder and pass "
        f"--vlm {kind}:/path/to/folder; without weights use --vlm {_tiny_model(kind)}"
    )


def _tiny_model(kind: str) -> str:
    family = CHAT_ARCHITECTURES.get(kind) if kind in CHAT_ARCHITECTURES else CHAT_ARCHITECTURES.get("smolvlm")
    return family.tiny_model


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


def load_chat_vlm(
    target: str,
    *,
    family: str | None = None,
    device: str = "cpu",
    precision: Precision = "auto",
    class_batch_size: int | None = None,
    normalize_length: bool = True,
    template: Any = None,
    image_budget: ImageBudget | None = None,
    spec_name: str | None = None,
) -> ChatVlmClassifier:
    """A :class:`~percep_rag.vlm.chat_scorer.ChatVlmClassifier` for ``target`` (folder or hub id, offline).

    ``family`` (``smolvlm``, ``qwen-vl``, ``gemma3``) refuses checkpoints of another family;
    ``None`` takes whichever family the checkpoint's ``model_type`` is registered for.
    ``spec_name`` is the ``--vlm`` backend the messages name (default: the family, or ``hf``).

    >>> import tempfile
    >>> from percep_rag.vlm.tiny_smolvlm import build_tiny_smolvlm
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     load_chat_vlm(str(build_tiny_smolvlm(folder)), precision="fp32").architecture.family
    'smolvlm'
    """
    kind = spec_name or family or "hf"
    folder = find_model_folder(target, kind=kind)
    dtype = resolve_precision(precision, device)
    wanted = None if family is None else CHAT_ARCHITECTURES.get(family)
    with without_progress_bars():
        model, processor, architecture = _load_folder(folder, kind, wanted, dtype)
    model.to(device)
    return ChatVlmClassifier(
        model, processor, template, architecture=architecture, image_budget=image_budget,
        class_batch_size=class_batch_size, normalize_length=normalize_length,
        name=target, random_weights=(folder / RANDOM_WEIGHTS_MARKER).is_file(),
    )  # fmt: skip


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


def _load_folder(
    folder: Path, kind: str, wanted: ChatArchitecture | None, dtype: Any
) -> tuple[Any, Any, ChatArchitecture]:
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise VlmNotFoundError(f"{kind} model folder {folder}: unreadable config ({error})") from None
    if wanted is not None:
        wanted.check_model(config, str(folder), kind)
    architecture = wanted or architecture_for_model_type(config.model_type)
    try:
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True, dtype=dtype)
    except ImportError as error:  # e.g. SmolVLMProcessor needs num2words
        raise VlmSpecError(f"loading {folder} needs a missing package: {error}") from None
    except OSError as error:
        raise VlmNotFoundError(f"{kind} model folder {folder} is incomplete: {error}") from None
    architecture.configure(processor)
    return model.eval(), processor, architecture


def save_random_model(folder: Any, model: Any, processor: Any) -> Path:
    """Write a random-weight test model and its processor with ``save_pretrained``, marked as random."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    with without_progress_bars():
        model.save_pretrained(out)
        processor.save_pretrained(out)
    (out / RANDOM_WEIGHTS_MARKER).write_text("random weights: a test model, its predictions mean nothing\n")
    return out
