"""The embedding adapter: backbone -> pooling -> alignment -> normalisation -> vectors.

>>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
>>> from PIL import Image
>>> embedder.embed([Image.new("RGB", (64, 48), "red")]).shape
(1, 64)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from tqdm.auto import tqdm

from percep_rag.alignment.base import Alignment, IdentityAlignment
from percep_rag.alignment.factory import load_alignment
from percep_rag.alignment.lora.dreamsim import default_alignment
from percep_rag.backbones import Backbone, TokenFeatures, create_backbone
from percep_rag.compiled import Forward
from percep_rag.config import CompileMode, EmbedderSpec, Fingerprint, Normalization, Pooling, Precision
from percep_rag.devices import resolve_device as resolve_device
from percep_rag.errors import ConfigError, ImageDecodeError
from percep_rag.io.decode import ImageFailure, decode_image
from percep_rag.io.device_decode import decode_jpegs
from percep_rag.io.loader import PixelBatch, iter_pixel_batches
from percep_rag.io.pixel_hash import image_pixel_hash
from percep_rag.io.sources import ImageSource
from percep_rag.io.transforms import preprocess_image, resize_and_crop
from percep_rag.pooling import normalize, pool, pooled_dim
from percep_rag.precision import compute_copy, cpu_compute_copy, resolve_precision
from percep_rag.text_space import check_text_space, text_queries_for

__all__ = ["AlignedEmbedder", "EmbeddingResult", "Embeddings", "ImageInput", "resolve_device"]

ImageInput = ImageSource | torch.Tensor | np.ndarray


@dataclass
class Embeddings:
    """Unit-length float32 vectors: ``base`` (no alignment) and ``aligned``, row-aligned."""

    base: np.ndarray
    aligned: np.ndarray


@dataclass
class EmbeddingResult:
    """Vectors for the inputs that decoded, and the failures of those that did not.

    ``indices[i]`` is the input position of row ``i``; nothing is dropped silently.
    ``pixel_hashes[i]`` is row ``i``'s pixel hash when they were asked for (else empty).
    """

    base: np.ndarray
    aligned: np.ndarray
    indices: list[int]
    failures: list[ImageFailure] = field(default_factory=list)
    pixel_hashes: list[str] = field(default_factory=list)


class AlignedEmbedder:
    """Images in, human-aligned unit vectors out (float32 numpy).

    One backbone pass gives both the base and the aligned vector for a feature-level
    alignment (gLocal); a LoRA alignment runs its fine-tuned copy of the backbone as well.
    On CUDA it uses bf16 autocast, channels-last and ``torch.compile`` and decodes JPEGs on
    the GPU; on CPU it decodes on background threads, overlapping the forward, compiles the
    forward for large jobs (:attr:`compiled`), and runs a bf16 copy of the weights where the
    CPU has native bf16 (``precision="auto"``; see :mod:`percep_rag.precision`). Pooling,
    alignment and normalisation are always fp32.

    Text (:meth:`embed_text`): a CLIP-family backbone's text tower, from the same checkpoint,
    built on the first text query; which vectors a text query may search is
    :mod:`percep_rag.text_space`'s rule, recorded in the fingerprint as ``text_queries``.
    """

    #: On CPU, ``compile="auto"`` compiles for jobs of at least this many images (see :attr:`compiled`).
    cpu_compile_min_images: int = 512
    #: On CPU, images per forward call (``batch_size`` still sets how many are decoded together):
    #: ViT-B/16's widest activation for 16 images (3152 x 3072 bf16) stays in the caches: on a 2-core
    #: AMX Xeon fc1's matmul ran ~2x faster than at 32 and the forward ~1.2x faster than at 64
    #: (issue 40, benchmarks/RESULTS.md).
    cpu_forward_batch: int = 16

    def __init__(
        self,
        backbone: Backbone,
        *,
        pooling: Pooling = "cls",
        alignment: Alignment | None = None,
        normalization: Normalization | None = None,
        device: str | torch.device = "auto",
        batch_size: int = 64,
        num_workers: int | None = None,
        amp: bool = True,
        compile: CompileMode = "auto",
        precision: Precision = "auto",
    ):
        self.device = resolve_device(device)
        self.backbone = backbone.to(self.device).eval()
        self.pooling: Pooling = pooling
        # A DreamSim release brings its adapter: the aligned space is the released model.
        self.alignment = alignment or default_alignment(backbone) or IdentityAlignment()
        self.normalization: Normalization = normalization or backbone.default_normalization
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.on_cuda = self.device.type == "cuda"
        # ``amp=False`` keeps meaning fp32 unless a precision is asked for explicitly.
        self.compute_dtype = resolve_precision(precision if amp or precision != "auto" else "fp32", self.device)
        self.amp = self.on_cuda and self.compute_dtype == torch.bfloat16
        self.base_dim = pooled_dim(backbone.dim, pooling)
        self.alignment.check_compatible(backbone, self.base_dim)
        adapted = self.alignment.adapt_backbone(self.backbone)
        self.aligned_backbone = None if adapted is None else adapted.to(self.device).eval()
        self._prepare_for_device(compile)
        self.dim = self._probe_output_dim()
        self._text_tower: torch.nn.Module | None = None
        self._text_lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: EmbedderSpec) -> AlignedEmbedder:
        """Build the backbone and alignment a spec names.

        >>> AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-clip-random", pooling="cls+patchmean")).dim
        64
        """
        device = resolve_device(spec.device)
        backbone = create_backbone(spec.backbone, spec.weights, device=device, seed=spec.seed)
        return cls(
            backbone,
            pooling=spec.pooling,
            # identity: the backbone's own alignment, if it brings one (a DreamSim release's adapter)
            alignment=None if spec.alignment.kind == "identity" else load_alignment(spec.alignment),
            normalization=spec.normalization,
            device=device,
            batch_size=spec.batch_size,
            num_workers=spec.num_workers,
            amp=spec.amp,
            compile=spec.compile,
            precision=spec.precision,
        )

    # ----------------------------------------------------------------- set-up
    def _prepare_for_device(self, compile_mode: CompileMode) -> None:
        base, aligned = self.backbone, self.aligned_backbone
        if self.on_cuda:
            self.backbone.to(memory_format=torch.channels_last)
            if aligned is not None:
                aligned.to(memory_format=torch.channels_last)
        else:
            # bf16 weights (a copy: the fp32 original keeps the fingerprint) beat CPU autocast.
            # bf16 copies rewritten for oneDNN (SDPA attention, fused QuickGELU); fp32 is the original module.
            base = cpu_compute_copy(base, self.compute_dtype)
            aligned = None if aligned is None else cpu_compute_copy(aligned, self.compute_dtype)
        compile_now = compile_mode == "always" or (compile_mode == "auto" and self.on_cuda)
        # Frozen weights (prepacked oneDNN linears, fused epilogues) are the CPU's fastest compiled form.
        freeze = not self.on_cuda
        self._base_forward = Forward(base, compile=compile_now, freeze=freeze)
        self._aligned_forward = None if aligned is None else Forward(aligned, compile=compile_now, freeze=freeze)
        # On CPU, "auto" compiles once a job is large enough to repay the compile time.
        self._compile_for_large_jobs = compile_mode == "auto" and not self.on_cuda

    @property
    def compiled(self) -> bool:
        """Whether the forward runs through ``torch.compile`` now.

        ``compile="auto"`` compiles on CUDA at once and, on CPU, for the first job of at least
        :attr:`cpu_compile_min_images` images: a query stays eager. On CPU the compiled form
        freezes the weights and (bf16) runs attention as SDPA and QuickGELU as a fused SiLU; on a
        2-core AMX Xeon clip-vit-b-16 ran at 0.65-0.74 of the bf16 matmul limit, after a first call of
        ~25 s (:attr:`compile_seconds`; issue 40 in benchmarks/RESULTS.md).
        """
        return any(forward.compiled for forward in self._forwards())

    @property
    def compile_seconds(self) -> float | None:
        """Wall seconds the first compiled call took (compile + one forward; summed over the
        base and aligned forwards), ``None`` before one ran: the one-off price of :attr:`compiled`."""
        times = [forward.compile_seconds for forward in self._forwards() if forward.compile_seconds is not None]
        return sum(times) if times else None

    def _forwards(self) -> list[Forward]:
        return [forward for forward in (self._base_forward, self._aligned_forward) if forward is not None]

    def prepare_for_job(self, images: int) -> None:
        """Say how many images are coming, when they come in several calls (indexing in chunks):
        on CPU, ``compile="auto"`` compiles for a job of :attr:`cpu_compile_min_images` or more.

        >>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", compile="never"))
        >>> embedder.prepare_for_job(10_000); embedder.compiled
        False
        """
        if self._compile_for_large_jobs and images >= self.cpu_compile_min_images:
            self._compile_for_large_jobs = False
            for forward in self._forwards():
                forward.compile()

    def _probe_output_dim(self) -> int:
        size = self.backbone.preprocess.image_size
        probe = torch.zeros(1, 3, size, size, dtype=torch.uint8, device=self.device)
        return int(self._embed_pixels(probe).aligned.shape[1])

    @cached_property
    def fingerprint(self) -> Fingerprint:
        """What identifies these vectors (hashes the weights once, on first use)."""
        weights = self.backbone.weights_digest()
        if self.aligned_backbone is not None:
            weights = f"{weights}+{self.aligned_backbone.weights_digest()}"
        return Fingerprint(
            backbone=self.backbone.name,
            weights_digest=weights,
            random_weights=self.backbone.random_weights,
            pooling=self.pooling,
            normalization=self.normalization,
            alignment=self.alignment.kind,
            alignment_digest=self.alignment.digest,
            base_dim=self.base_dim,
            dim=self.dim,
            text_queries=self.text_queries,
        )

    @property
    def text_queries(self) -> str:
        """What text queries search with this embedder: ``none``, ``base`` or ``base+aligned``
        (:mod:`percep_rag.text_space`).

        >>> AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-clip-random")).text_queries
        'base+aligned'
        """
        return text_queries_for(
            has_text_tower=self.backbone.has_text_tower, pooling=self.pooling, alignment=self.alignment.kind
        )

    # ------------------------------------------------------------- computing
    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def _embed_pixels(self, pixels: torch.Tensor, normalized: bool = True) -> Embeddings:
        """``pixels``: ``(B, 3, S, S)`` uint8, or float in [0, 1], at the backbone's size.

        ``normalized=False`` returns the raw pooled features (what gLocal is fitted on)."""
        if pixels.shape[0] == 0:
            return Embeddings(
                np.zeros((0, self.base_dim), np.float32), np.zeros((0, getattr(self, "dim", 0)), np.float32)
            )
        pixels = pixels.to(self.device, non_blocking=True)
        pixels = pixels.float().div_(255.0) if pixels.dtype == torch.uint8 else pixels.float()
        if self.on_cuda:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        base, aligned_input = self._pooled_features(pixels)
        aligned = self.alignment.transform(aligned_input)
        if not normalized:
            return Embeddings(base.cpu().numpy(), aligned.float().cpu().numpy())
        return Embeddings(
            base=normalize(base, self.normalization).cpu().numpy(),
            aligned=normalize(aligned.float(), self.normalization).cpu().numpy(),
        )

    @property
    def forward_batch_size(self) -> int:
        """Images per forward call: ``batch_size`` on CUDA, at most :attr:`cpu_forward_batch` on CPU.

        >>> spec = EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=64)
        >>> AlignedEmbedder.from_spec(spec).forward_batch_size
        16
        """
        return self.batch_size if self.on_cuda else min(self.batch_size, self.cpu_forward_batch)

    def _pooled_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled fp32 base features and the alignment's input for float ``pixels``, a forward batch at a time."""
        step = self.forward_batch_size
        bases, inputs = [], []
        for start in range(0, len(pixels), step):
            chunk = pixels[start : start + step]
            count = len(chunk)
            if self.compiled and count < step:
                # A compiled graph is specialised to one batch shape: pad rather than recompile.
                chunk = torch.cat([chunk, chunk.new_zeros((step - count, *chunk.shape[1:]))])
            with self._autocast():
                base_tokens = self._base_forward(chunk)
                aligned_tokens = None if self._aligned_forward is None else self._aligned_forward(chunk)
            base = pool(_in_fp32(base_tokens), self.pooling)[:count]
            bases.append(base)
            inputs.append(base if aligned_tokens is None else pool(_in_fp32(aligned_tokens), self.pooling)[:count])
        return torch.cat(bases), torch.cat(inputs)

    def embed_text(self, texts: Sequence[str], *, using: str = "base") -> np.ndarray:
        """Unit vectors ``(N, D)`` float32 of text queries, comparable with the ``using`` vectors of images.

        ``base``: the text tower's ``encode_text``, normalised as image vectors are; ``aligned``
        also maps it through the alignment where :mod:`percep_rag.text_space` allows it. Bad text
        (empty, not a string, longer than the tower's context) and a backbone, pooling or
        alignment where text has no meaning raise :class:`~percep_rag.errors.TextQueryError`.

        >>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-clip-random"))
        >>> embedder.embed_text(["a red square", "a blue circle"]).shape
        (2, 32)
        """
        check_text_space(self.fingerprint_fields(), using)
        tower = self._loaded_text_tower()
        tokens = tower.tokenize(texts)
        with torch.inference_mode(), self._autocast():
            features = torch.cat(
                [tower(tokens[start : start + self.batch_size]) for start in range(0, len(tokens), self.batch_size)]
            ).float()
        if using == "aligned":
            features = self.alignment.transform(features).float()
        return normalize(features, self.normalization).cpu().numpy()

    def fingerprint_fields(self) -> Fingerprint:
        """The fingerprint without hashing the weights (``weights_digest`` left empty): for rules
        that read only the backbone, pooling and alignment."""
        if "fingerprint" in self.__dict__:
            return self.fingerprint
        return Fingerprint(
            backbone=self.backbone.name,
            weights_digest="",
            random_weights=self.backbone.random_weights,
            pooling=self.pooling,
            normalization=self.normalization,
            alignment=self.alignment.kind,
            alignment_digest=self.alignment.digest,
            base_dim=self.base_dim,
            dim=self.dim,
            text_queries=self.text_queries,
        )

    def _loaded_text_tower(self) -> torch.nn.Module:
        # Built once, on first use (image-only work never pays for it); requests may race here.
        with self._text_lock:
            if self._text_tower is None:
                tower = self.backbone.text_tower()
                self._text_tower = compute_copy(tower, self.compute_dtype) if not self.on_cuda else tower
            return self._text_tower

    def embed_tensors(self, pixels: torch.Tensor) -> Embeddings:
        """Embed already-preprocessed pixels ``(B, 3, S, S)`` (uint8 or float in [0, 1]).

        Tensors of another size are resized and cropped on the device first.
        """
        pixels = self._as_square_pixels(pixels)
        self.prepare_for_job(len(pixels))
        parts = [
            self._embed_pixels(pixels[start : start + self.batch_size])
            for start in range(0, len(pixels), self.batch_size)
        ]
        return _stack(parts, self.base_dim, self.dim)

    def embed_both(self, images: Sequence[ImageInput] | ImageInput) -> Embeddings:
        """Base and aligned vectors; a bad image raises :class:`ImageDecodeError`.

        >>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
        >>> both = embedder.embed_both(torch.rand(3, 3, 32, 32))
        >>> both.base.shape == both.aligned.shape == (3, 64)
        True
        """
        if isinstance(images, (torch.Tensor, np.ndarray)) and _is_batch_array(images):
            return self.embed_tensors(_to_tensor(images))
        if not isinstance(images, (list, tuple)):
            images = [images]
        pixels = torch.stack([self._pixels_for(image) for image in images]) if images else torch.empty(0, 3, 1, 1)
        return self.embed_tensors(pixels)

    def embed(self, images: Sequence[ImageInput] | ImageInput) -> np.ndarray:
        """Aligned unit vectors ``(N, dim)`` float32; a bad image raises :class:`ImageDecodeError`."""
        return self.embed_both(images).aligned

    def embed_many(
        self,
        sources: Sequence[ImageSource],
        *,
        progress: bool | str = False,
        on_batch: Callable[[EmbeddingResult], None] | None = None,
        normalized: bool = True,
        pixel_hashes: bool = False,
    ) -> EmbeddingResult:
        """Embed many files/bytes/images with decoding in workers; bad inputs are reported
        in ``failures``, the good ones embedded. ``on_batch`` sees each batch's result
        (indices into ``sources``) as soon as it is ready, e.g. to write it out.
        ``normalized=False`` gives raw pooled features instead of unit vectors;
        ``pixel_hashes=True`` also hashes each decoded image (:mod:`percep_rag.io.pixel_hash`)."""
        parts: list[EmbeddingResult] = []
        for part in self.iter_embed(sources, progress=progress, normalized=normalized, pixel_hashes=pixel_hashes):
            if on_batch is not None:
                on_batch(part)
            parts.append(part)
        return EmbeddingResult(
            base=_concat([p.base for p in parts], self.base_dim),
            aligned=_concat([p.aligned for p in parts], self.dim),
            indices=[i for p in parts for i in p.indices],
            failures=[f for p in parts for f in p.failures],
            pixel_hashes=[h for p in parts for h in p.pixel_hashes],
        )

    def iter_embed(
        self,
        sources: Sequence[ImageSource],
        *,
        progress: bool | str = False,
        normalized: bool = True,
        pixel_hashes: bool = False,
    ) -> Iterator[EmbeddingResult]:
        """Like :meth:`embed_many`, one :class:`EmbeddingResult` per batch, in input order."""
        self.prepare_for_job(len(sources))
        description = progress if isinstance(progress, str) else "embedding"
        bar = tqdm(total=len(sources), desc=description, unit="img", disable=not progress)
        batches = iter_pixel_batches(
            sources,
            self.backbone.preprocess,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            keep_jpeg_bytes=self.on_cuda,
            pin_memory=self.on_cuda,
            pixel_hashes=pixel_hashes,
            model_on_cpu=not self.on_cuda,
        )
        with bar:
            for batch in batches:
                result = self._embed_batch(batch, sources, normalized, pixel_hashes)
                bar.update(len(result.indices) + len(result.failures))
                yield result

    # -------------------------------------------------------------- helpers
    def _embed_batch(
        self, batch: PixelBatch, sources: Sequence[ImageSource], normalized: bool, pixel_hashes: bool = False
    ) -> EmbeddingResult:
        pixels, indices, failures = batch.pixels, list(batch.indices), list(batch.failures)
        hashes = dict(batch.pixel_hashes)
        if batch.jpeg_bytes:
            gpu_pixels, ok = decode_jpegs(batch.jpeg_bytes, self.backbone.preprocess, self.device)
            pixels = torch.cat([pixels.to(self.device), gpu_pixels]) if len(pixels) else gpu_pixels
            indices += [batch.jpeg_indices[position] for position in ok]
            retry = sorted(set(range(len(batch.jpeg_bytes))) - set(ok))
            for position in retry:  # the careful CPU path gives a precise error or a good image
                index = batch.jpeg_indices[position]
                try:
                    image = decode_image(sources[index])
                    square = preprocess_image(image, self.backbone.preprocess)
                    pixels = torch.cat([pixels, square.unsqueeze(0).to(self.device)])
                    indices.append(index)
                    if pixel_hashes:
                        hashes[index] = image_pixel_hash(image)
                except ImageDecodeError as error:
                    failures.append(ImageFailure(source=error.source, reason=error.reason, index=index))
        order = sorted(range(len(indices)), key=indices.__getitem__)
        embeddings = self._embed_pixels(pixels[order] if len(order) else pixels, normalized)
        rows = [indices[i] for i in order]
        found = [hashes.get(i, "") for i in rows] if pixel_hashes else []
        return EmbeddingResult(embeddings.base, embeddings.aligned, rows, failures, found)

    def _pixels_for(self, image: ImageInput) -> torch.Tensor:
        if isinstance(image, (torch.Tensor, np.ndarray)):
            return self._as_square_pixels(_to_tensor(image).unsqueeze(0))[0].cpu()
        return preprocess_image(decode_image(image), self.backbone.preprocess)

    def _as_square_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ConfigError(f"expected image tensors shaped (B, 3, H, W), got {tuple(pixels.shape)}")
        size = self.backbone.preprocess.image_size
        if pixels.shape[-2:] == (size, size):
            return pixels
        as_uint8 = pixels if pixels.dtype == torch.uint8 else (pixels.clamp(0, 1) * 255).round().to(torch.uint8)
        return torch.stack([resize_and_crop(image, self.backbone.preprocess) for image in as_uint8])


def _in_fp32(tokens: TokenFeatures) -> TokenFeatures:
    return TokenFeatures(tokens.cls.float(), tokens.patches.float())


def _is_batch_array(images: torch.Tensor | np.ndarray) -> bool:
    return images.ndim == 4


def _to_tensor(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Tensors pass through; numpy arrays are read as ``(H, W, 3)``/``(B, H, W, 3)`` uint8 images."""
    if isinstance(image, torch.Tensor):
        return image
    array = np.asarray(image)
    if array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise ConfigError(f"numpy images must be (H, W, 3) or (B, H, W, 3), got {array.shape}")
    # torch warns about (and must not write through) read-only arrays, e.g. np.asarray of a PIL image: copy those.
    tensor = torch.from_numpy(np.ascontiguousarray(array) if array.flags.writeable else array.copy())
    return tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)


def _concat(arrays: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros((0, dim), np.float32)


def _stack(parts: list[Embeddings], base_dim: int, dim: int) -> Embeddings:
    return Embeddings(_concat([p.base for p in parts], base_dim), _concat([p.aligned for p in parts], dim))
