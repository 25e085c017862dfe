"""Retrieval: the nearest stored images for a query image, text, vector or point id.

:class:`Retriever` answers top-k queries with filters over the ``base`` or ``aligned``
vectors; :class:`ExampleRetriever` turns hits into few-shot examples (image + label/prompt)
in RICES order, most similar LAST.

The query itself, two rules: a search (:meth:`Retriever.search`, hence ``search``, ``show``, the
HTTP service and LangChain) never returns the query's own point (same content id) but does
return its other copies, marked ``copy_of_query``: ``"exact"`` for the same pixels (stored
``pixel_hash`` equal to the query's), ``"near"`` for a cosine at or above the near-copy
threshold calibrated for the collection's space or given (none: nothing is near; see
:mod:`percep_rag.duplicates`); few-shot retrieval drops every copy of the query (same file,
same pixels, same vector).

Text queries (:meth:`Retriever.search` with ``text=``, :meth:`Retriever.search_texts`) are
embedded by the embedder's text path (a CLIP-family text tower) and search ``base`` by default;
:mod:`percep_rag.text_space` says where else they may search.

>>> from percep_rag import AlignedEmbedder, EmbedderSpec
>>> from percep_rag.store import open_store
>>> from percep_rag.indexing import index_records
>>> from percep_rag.datasets.records import ImageRecord
>>> from PIL import Image
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> records = []
>>> for name in ("red", "green", "blue"):
...     Image.new("RGB", (32, 32), name).save(folder / f"{name}.png")
...     records.append(ImageRecord(id=name, uri=str(folder / f"{name}.png"), label=name))
>>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
>>> store = open_store(":memory:")
>>> _ = index_records(records, embedder=embedder, store=store, collection="colours", progress=False)
>>> examples = ExampleRetriever(store, "colours", embedder).examples(str(folder / "red.png"), k=2)
>>> len(examples), "red" in [e.label for e in examples]
(2, False)
>>> diverse = ExampleRetriever(store, "colours", embedder).examples(str(folder / "red.png"), k=2, diversity=0.5)
>>> sorted(e.label for e in diverse) == sorted(e.label for e in examples)  # only two candidates
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from percep_rag.copy_marks import drop_query_copies, mark_copies, query_pixel_hash
from percep_rag.copy_threshold import NearCopyRule, near_copy_rule
from percep_rag.embedder import AlignedEmbedder, ImageInput
from percep_rag.errors import ConfigError, ImageDecodeError
from percep_rag.io.images import read_image_bytes
from percep_rag.mmr import DEFAULT_FETCH_K, check_lambda_mult, check_positive_int, rerank_hits
from percep_rag.pixel_backfill import known_pixel_hash
from percep_rag.store import ScoredPoint, VectorStore, content_hash, point_id
from percep_rag.store.checks import check_same_embedder
from percep_rag.text_space import check_text_space

VectorName = Literal["base", "aligned"]


def check_fingerprint(store: VectorStore, collection: str, embedder: AlignedEmbedder) -> None:
    """Refuse to query ``collection`` with vectors from an embedder other than its writer's.

    Raises :class:`~percep_rag.errors.FingerprintMismatchError` listing the differing fields.
    """
    check_same_embedder(collection, store.get_fingerprint(collection), embedder.fingerprint)


class Retriever:
    """Top-k search in one collection with the embedder that wrote it."""

    def __init__(self, store: VectorStore, collection: str, embedder: AlignedEmbedder):
        check_fingerprint(store, collection, embedder)
        self.store = store
        self.collection = collection
        self.embedder = embedder

    def query_ids(self, images: Sequence[ImageInput]) -> list[str | None]:
        """The point id each query image would have if indexed (``None`` when not a file/bytes)."""
        return [_point_id_of(image, self.collection) for image in images]

    def vectors_for(self, images: Sequence[ImageInput], using: VectorName) -> np.ndarray:
        """Embed query images into the named vector space."""
        both = self.embedder.embed_both(list(images))
        return both.aligned if using == "aligned" else both.base

    def copy_rule(self, using: VectorName, duplicate_threshold: float | None = None) -> NearCopyRule | None:
        """What makes a hit in ``using`` a near copy: ``duplicate_threshold`` when given, else the
        threshold calibrated for that space and stored with the collection, else ``None``."""
        return near_copy_rule(
            self.store, self.collection, using, duplicate_threshold, given_as="duplicate_threshold"
        )

    def pixel_hashes(self, images: Sequence[ImageInput]) -> list[str | None]:
        """The pixel hash of each query image (:func:`percep_rag.duplicates.pixel_hash`): of a
        file, bytes, a PIL image or a ``uint8`` ``(H, W[, 3|4])`` array; ``None`` for a tensor or
        another array (no 8-bit pixels to compare). Decoded apart from the embedding: an
        embedder may cache vectors by the query object (the service's queue does)."""
        return [query_pixel_hash(image) for image in images]

    def search(
        self,
        image: ImageInput | None = None,
        *,
        text: str | None = None,
        vector: np.ndarray | None = None,
        point: str | None = None,
        k: int = 10,
        using: VectorName | None = None,
        filter: Mapping[str, object] | None = None,
        exclude_ids: Iterable[str] = (),
        duplicate_threshold: float | None = None,
    ) -> list[ScoredPoint]:
        """Nearest points to exactly one of ``image``, ``text``, ``vector`` or stored ``point`` (an id),
        most similar first. A query by image or point never returns its own point; its other
        copies are returned, marked ``copy_of_query`` (see :meth:`search_batch`). A vector query
        has no pixels: only ``duplicate_threshold`` marks near copies there; a text query is no
        image and marks none (``duplicate_threshold`` is refused). ``using`` defaults to
        ``aligned``, and to ``base`` for text (:meth:`search_texts`)."""
        given = [
            name
            for name, value in (("image", image), ("text", text), ("vector", vector), ("point", point))
            if value is not None
        ]
        if len(given) != 1:
            raise ConfigError(f"give exactly one of image, text, vector or point; got {given or 'none'}")
        if text is not None:
            if duplicate_threshold is not None:
                raise ConfigError("duplicate_threshold marks copies of an image query; a text has none")
            return self.search_texts([text], k=k, using=using or "base", filter=filter, exclude_ids=exclude_ids)[0]
        using = using or "aligned"
        excluded = set(exclude_ids)
        if image is not None:
            return self.search_batch(
                [image], k=k, using=using, filter=filter, exclude_ids=excluded, duplicate_threshold=duplicate_threshold
            )[0]
        query_pixels = None
        if point is not None:
            stored = self.store.retrieve(self.collection, [point], with_vectors=True)
            if not stored:
                raise ConfigError(f"no point {point!r} in collection {self.collection!r}")
            vector = stored[0].vectors[using]
            excluded.add(stored[0].id)
            query_pixels = known_pixel_hash(stored[0].payload)
            rule = self.copy_rule(using, duplicate_threshold)
        else:  # a raw vector may be anything's: only a threshold given for it says "near"
            rule = self.copy_rule(using, duplicate_threshold) if duplicate_threshold is not None else None
        hits = self.store.query(self.collection, vector, using=using, k=k, filter=filter, exclude_ids=excluded)
        return mark_copies(hits, query_pixels, rule)

    def search_batch(
        self,
        images: Sequence[ImageInput],
        *,
        k: int = 10,
        using: VectorName = "aligned",
        filter: Mapping[str, object] | None = None,
        exclude_ids: Iterable[str] = (),
        lambda_mult: float = 1.0,
        fetch_k: int | None = None,
        duplicate_threshold: float | None = None,
    ) -> list[list[ScoredPoint]]:
        """:meth:`search` for many query images at once (one embedding pass, one batched query).

        ``lambda_mult < 1`` picks the ``k`` by maximal marginal relevance among the ``fetch_k``
        most similar (default ``4 * k``, at least :data:`~percep_rag.mmr.DEFAULT_FETCH_K`), in
        pick order (see :mod:`percep_rag.mmr`); ``1`` is plain similarity, most similar first.

        The query itself: a path or bytes never retrieves its own point (the same content id,
        whatever the file is called). Every other point is a candidate, and its copies come
        back marked, which a catalog search is there to find: ``copy_of_query="exact"`` when
        the hit's pixels are the query's (the query is decoded once, for its vector and its
        pixel hash), ``"near"`` when its cosine reaches ``duplicate_threshold`` or, not given,
        the threshold calibrated for ``using`` (``duplicates --calibrate``); with neither,
        nothing is near. A PIL image or array has no content id, so its stored copy comes
        back, marked (an array has no pixel hash: at most near). Few-shot retrieval
        (:class:`ExampleRetriever`) is stricter and drops those copies too.
        """
        rule = self.copy_rule(using, duplicate_threshold)
        found = self._nearest(images, k, using, filter, exclude_ids, lambda_mult, fetch_k, drop_copies=False)
        hashes = self.pixel_hashes(images)
        return [mark_copies(row, query, rule) for row, query in zip(found, hashes, strict=True)]

    def search_texts(
        self,
        texts: Sequence[str],
        *,
        k: int = 10,
        using: VectorName = "base",
        filter: Mapping[str, object] | None = None,
        exclude_ids: Iterable[str] = (),
        lambda_mult: float = 1.0,
        fetch_k: int | None = None,
    ) -> list[list[ScoredPoint]]:
        """The nearest stored images to each text query (one text-tower pass, one batched query).

        Text searches ``base`` by default; the collection's fingerprint says whether it may search
        ``aligned`` (:mod:`percep_rag.text_space`), and bad text or a collection where text has no
        meaning raises :class:`~percep_rag.errors.TextQueryError`. ``lambda_mult`` and ``fetch_k``
        are as for :meth:`search_batch`; no hit is a copy of a text (``copy_of_query`` stays ``None``).

        >>> from PIL import Image
        >>> from percep_rag import EmbedderSpec
        >>> from percep_rag.store import open_store
        >>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-clip-random"))
        >>> store = open_store(":memory:")
        >>> _ = store.ensure_collection("words", embedder.fingerprint)
        >>> both = embedder.embed_both([Image.new("RGB", (32, 32), c) for c in ("red", "green", "blue")])
        >>> _ = store.upsert_arrays("words", [point_id(str(i), "words") for i in range(3)],
        ...                     {"base": both.base, "aligned": both.aligned}, [{"n": i} for i in range(3)])
        >>> [len(hits) for hits in Retriever(store, "words", embedder).search_texts(["red", "a green thing"], k=2)]
        [2, 2]
        """
        # The embedder's fingerprint equals the collection's (checked at construction): no store round trip.
        check_text_space(self.embedder.fingerprint_fields(), using, self.collection)
        vectors = self.embedder.embed_text(list(texts), using=using)
        per_query = [set(exclude_ids) for _ in texts]
        return self._query_vectors(vectors, per_query, k, using, filter, lambda_mult, fetch_k)

    def _nearest(
        self,
        images: Sequence[ImageInput],
        k: int,
        using: VectorName,
        filter: Mapping[str, object] | None,
        exclude_ids: Iterable[str],
        lambda_mult: float,
        fetch_k: int | None,
        *,
        drop_copies: bool,
        labelled_only: bool = False,
    ) -> list[list[ScoredPoint]]:
        """Top-``k`` per query without its own point; ``drop_copies`` also drops its file (``uri``),
        every stored point with its pixels and every one whose vector equals its own (the
        few-shot rule), ``labelled_only`` every point with neither a label nor a prompt."""
        _check_using(using)
        excluded = set(exclude_ids)
        per_query = [excluded | ({own} if own else set()) for own in self.query_ids(images)]
        vectors = self.vectors_for(images, using)
        pixels = self.pixel_hashes(images) if drop_copies else None
        return self._query_vectors(
            vectors, per_query, k, using, filter, lambda_mult, fetch_k,
            images=images if drop_copies else None, labelled_only=labelled_only, pixels=pixels,
        )  # fmt: skip

    def _query_vectors(
        self,
        vectors: np.ndarray,
        per_query: list[set[str]],
        k: int,
        using: VectorName,
        filter: Mapping[str, object] | None,
        lambda_mult: float,
        fetch_k: int | None,
        *,
        images: Sequence[ImageInput] | None = None,
        labelled_only: bool = False,
        pixels: Sequence[str | None] | None = None,
    ) -> list[list[ScoredPoint]]:
        """Top-``k`` per query vector; with the query ``images`` (and their ``pixels`` hashes) also
        drops their copies (the few-shot rule)."""
        _check_using(using)
        drop_copies = images is not None
        diverse = check_lambda_mult(lambda_mult) < 1
        if not diverse:
            fetch = k
        else:
            fetch = max(DEFAULT_FETCH_K, 4 * k) if fetch_k is None else check_positive_int(fetch_k, "fetch_k")
        extra = 1 if drop_copies else 0  # hits that may be the query itself, stored under another id
        while True:
            hits = self.store.query_batch(
                self.collection,
                vectors,
                using=using,
                k=fetch + extra,
                filter=filter,
                exclude_per_query=per_query,
                with_vectors=drop_copies or diverse,
            )
            if not drop_copies:
                kept = hits
                break
            assert images is not None
            own_pixels = list(pixels) if pixels is not None else [None] * len(images)
            kept = [
                drop_query_copies(row, image, vector, using, query_pixels)
                for row, image, vector, query_pixels in zip(hits, images, vectors, own_pixels, strict=True)
            ]
            if labelled_only:
                kept = [[hit for hit in row if _has_text(hit)] for row in kept]
            # More copies of the query (or unlabelled points) than the margin: ask again for more.
            short = [len(row) < fetch and len(raw) == fetch + extra for row, raw in zip(kept, hits, strict=True)]
            if not any(short):
                break
            extra *= 4
        found = [row[:fetch] for row in kept]
        if not diverse:
            return [[replace(hit, vectors=None) for hit in row] for row in found]
        return [
            rerank_hits(vector, row, using=using, k=k, lambda_mult=lambda_mult)
            for vector, row in zip(vectors, found, strict=True)
        ]


def _check_using(using: str) -> None:
    if using not in get_args(VectorName):
        raise ConfigError(f"using must be one of {', '.join(get_args(VectorName))}; got {using!r}")


@dataclass(frozen=True)
class Example:
    """A retrieved few-shot example: the image's location, its label/prompt and similarity."""

    id: str
    uri: str
    label: str | None
    prompt: str | None
    score: float
    payload: dict[str, Any]

    @property
    def text(self) -> str:
        """What the example says in a prompt: its prompt text, else its label."""
        return self.prompt if self.prompt is not None else (self.label or "")

    @classmethod
    def from_hit(cls, hit: ScoredPoint) -> Example:
        """The example a search hit stands for (its payload's ``uri``, ``label`` and ``prompt``).

        >>> Example.from_hit(ScoredPoint("id", 0.9, {"uri": "a.png", "label": "cat"})).text
        'cat'
        """
        payload = hit.payload
        return cls(
            id=hit.id,
            uri=str(payload.get("uri", "")),
            label=payload.get("label"),
            prompt=payload.get("prompt"),
            score=hit.score,
            payload=payload,
        )


class ExampleRetriever(Retriever):
    """Few-shot examples for a query image (RICES): top-k by similarity, most similar LAST.

    Never the query image itself in any form: not its point, not its file, no stored point with
    its pixels (an exact copy: the same ``pixel_hash``) and no stored point whose vector equals
    the query's (``1 - cosine <=`` :data:`~percep_rag.copy_marks.SAME_IMAGE_TOLERANCE`), so a
    test image never leaks into its own prompt, even re-encoded or passed as a PIL image; and
    since one point holds all byte-identical files, the VLM never sees two copies of one file.

    How this differs from a catalog search (:meth:`Retriever.search`): a search is there to
    *find* copies, so it returns the query's other copies and marks them (``copy_of_query``:
    exact by pixels, near by the collection's calibrated threshold); few-shot retrieval is
    there to *teach* a VLM with other images, so an exact copy would hand it the answer and is
    dropped, not marked. Near copies (resized, re-encoded) are not dropped here: whether one is
    the same image is the calibrated threshold's call, and few-shot evaluation draws its
    examples from another split.

    ``diversity`` > 0 trades similarity for variety: the ``k`` examples are picked by
    maximal marginal relevance (``lambda_mult = 1 - diversity``, see :mod:`percep_rag.mmr`)
    among the ``fetch_k`` most similar, and come in reverse pick order, so the most
    similar example is still last. ``diversity=0`` is plain nearest neighbours.
    """

    def examples(
        self,
        image: ImageInput,
        *,
        k: int = 3,
        using: VectorName = "aligned",
        filter: Mapping[str, object] | None = None,
        exclude_ids: Iterable[str] = (),
        diversity: float = 0.0,
        fetch_k: int | None = None,
        labelled_only: bool = False,
    ) -> list[Example]:
        """The ``k`` examples for ``image``, most similar last (see the class docstring)."""
        return self.examples_batch(
            [image], k=k, using=using, filter=filter, exclude_ids=exclude_ids, diversity=diversity, fetch_k=fetch_k,
            labelled_only=labelled_only,
        )[0]  # fmt: skip

    def examples_batch(
        self,
        images: Sequence[ImageInput],
        *,
        k: int = 3,
        using: VectorName = "aligned",
        filter: Mapping[str, object] | None = None,
        exclude_ids: Iterable[str] = (),
        diversity: float = 0.0,
        fetch_k: int | None = None,
        as_hits: bool = False,
        labelled_only: bool = False,
    ) -> list[list[Example]] | list[list[ScoredPoint]]:
        """:meth:`examples` for many query images, embedded in one pass (``as_hits``: the
        store hits instead, in search order, most similar first). ``labelled_only``: only points
        with a label or a prompt, the text a prompt shows (a catalog may hold unlabelled images)."""
        if isinstance(diversity, bool) or not isinstance(diversity, int | float) or not 0 <= diversity <= 1:
            raise ConfigError(f"diversity must be a number in [0, 1], got {diversity!r}")
        # Stricter than search: no copy of the query (same uri or same vector) may leak into its prompt.
        hits = self._nearest(
            images, k, using, filter, exclude_ids, 1.0 - diversity, fetch_k, drop_copies=True,
            labelled_only=labelled_only,
        )  # fmt: skip
        if as_hits:
            return hits
        # OpenFlamingo's RICES puts the most similar example right before the query.
        return [[Example.from_hit(hit) for hit in reversed(found)] for found in hits]

    def query_copies(self, images: Sequence[ImageInput]) -> list[set[str]]:
        """Per query image, the point ids :meth:`examples_batch` never returns for it in either
        vector space: its own (stored or not), the points of its file, the points with its vector.
        Examples drawn another way (at random, say) leave these out to follow the same rule.

        >>> from percep_rag import AlignedEmbedder, EmbedderSpec
        >>> from percep_rag.store import open_store
        >>> from percep_rag.indexing import index_records
        >>> from percep_rag.datasets.records import ImageRecord
        >>> from PIL import Image
        >>> import tempfile, pathlib, shutil
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("red", "blue"):
        ...     Image.new("RGB", (32, 32), name).save(folder / f"{name}.png")
        >>> _ = shutil.copy(folder / "red.png", folder / "query.png")
        >>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
        >>> store = open_store(":memory:")
        >>> records = [ImageRecord(id=n, uri=str(folder / f"{n}.png"), label=n) for n in ("red", "blue")]
        >>> _ = index_records(records, embedder=embedder, store=store, collection="c", progress=False)
        >>> [copy] = ExampleRetriever(store, "c", embedder).query_copies([str(folder / "query.png")])
        >>> [p.payload["label"] for p in store.retrieve("c", sorted(copy))]
        ['red']
        """
        images = list(images)
        copies: list[set[str]] = [{own} if own else set() for own in self.query_ids(images)]
        files: dict[str, list[int]] = {}
        for i, image in enumerate(images):
            if isinstance(image, (str, Path)):
                files.setdefault(str(Path(image)), []).append(i)
        if files:
            for point in self.store.iterate(self.collection, {"uri": sorted(files)}):
                for i in files[point.payload["uri"]]:
                    copies[i].add(point.id)
        pixels = self.pixel_hashes(images)
        both = self.embedder.embed_both(images)
        for using, vectors in (("aligned", both.aligned), ("base", both.base)):
            todo, page = list(range(len(images))), 4
            while todo:  # copies score ~1, so they come first; a page of nothing but copies asks for more
                rows = self.store.query_batch(self.collection, vectors[todo], using=using, k=page, with_vectors=True)
                more = []
                for i, row in zip(todo, rows, strict=True):
                    kept = {hit.id for hit in drop_query_copies(row, images[i], vectors[i], using, pixels[i])}
                    copies[i].update(hit.id for hit in row if hit.id not in kept)
                    if not kept and len(row) == page:
                        more.append(i)
                todo, page = more, page * 4
        return copies


def _point_id_of(image: ImageInput, collection: str) -> str | None:
    if isinstance(image, (bytes, bytearray)):
        return point_id(content_hash(bytes(image)), collection)
    if isinstance(image, (str, Path)):
        try:
            return point_id(content_hash(read_image_bytes(image)), collection)
        except ImageDecodeError:
            return None  # the embedding step reports the bad image precisely
    return None


def _has_text(hit: ScoredPoint) -> bool:
    """Whether a hit has what a prompt shows of an example: a label or a prompt."""
    return bool(hit.payload.get("label") or hit.payload.get("prompt"))
