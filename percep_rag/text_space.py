"""Which vectors a text query searches: the rule, stated once.

A CLIP-family backbone embeds text with its text tower into CLIP's joint image-text space.
Which stored vectors are in that space:

* ``base`` with ``cls`` pooling: the projected CLS embedding, exactly ``encode_image``, is the
  joint space. **Text searches ``base`` by default.**
* ``aligned`` with the identity alignment: equal to ``base``, so allowed.
* ``aligned`` with a gLocal map: the map is an affine map of that joint space, so the text
  embedding is mapped by it as an image embedding is (``((t - mean) / std) W + b``, then
  normalised). Allowed on request (``using="aligned"``); ``base`` stays the default, as the map was
  fitted on image embeddings only.
* ``aligned`` with a LoRA (DreamSim-style) adapter: refused. The adapter fine-tuned the image
  tower, not the text tower, so the aligned image vectors left the text tower's space.
* ``cls+patchmean`` pooling: refused. Its vectors concatenate the CLS embedding and the patch
  mean; no text vector stands for the patch half, so the collection is not CLIP's space.
* Backbones without a text tower (DINO, DINOv2, the ensembles, whose concatenated vector is no
  text tower's space): refused, naming the backbone.

Every collection records the rule's answer as ``Fingerprint.text_queries`` (``none``, ``base``,
``base+aligned``) and ``percep-rag info`` shows it with its reason.

>>> text_queries_for(has_text_tower=True, pooling="cls", alignment="lora")
'base'
>>> text_queries_for(has_text_tower=False, pooling="cls", alignment="identity")
'none'
"""

from __future__ import annotations

from percep_rag.backbones.base import no_text_tower_message
from percep_rag.config import Fingerprint, TextQueries
from percep_rag.errors import TextQueryError

__all__ = ["check_text_space", "describe_text_queries", "text_queries_for", "text_queries_of"]


#: Alignments that change the image tower itself (not a map on its embedding): text stays in ``base``.
_IMAGE_TOWER_ADAPTERS = frozenset({"lora", "dreamsim"})


def text_queries_for(*, has_text_tower: bool, pooling: str, alignment: str) -> TextQueries:
    """What text queries search for a backbone with or without a text tower, a pooling and an alignment kind."""
    if not has_text_tower or pooling != "cls":
        return "none"
    return "base" if alignment in _IMAGE_TOWER_ADAPTERS else "base+aligned"


def _why(fingerprint: Fingerprint, queries: TextQueries) -> str:
    if queries == "none":
        if fingerprint.pooling != "cls" and backbone_has_text_tower(fingerprint.backbone):
            return (
                f"{fingerprint.pooling} vectors are not CLIP's image-text space (no text vector stands for "
                "the patch mean); a collection indexed with --pooling cls takes text queries"
            )
        return no_text_tower_message(fingerprint.backbone)
    if fingerprint.alignment in _IMAGE_TOWER_ADAPTERS:
        return "a LoRA adapter changed the image tower, not the text tower: aligned vectors are not in its space"
    if fingerprint.alignment == "glocal":
        return "aligned: the gLocal map applied to the text embedding as to an image embedding"
    return "aligned equals base: no alignment"


def backbone_has_text_tower(name: str) -> bool:
    """Whether the registered backbone ``name`` is one CLIP-family open_clip network (``False`` if unknown)."""
    from percep_rag.backbones.registry import REGISTRY

    if name not in REGISTRY.names():
        return False
    entry = REGISTRY.get(name)
    return entry.network is not None and entry.network.library == "open_clip"


def text_queries_of(fingerprint: Fingerprint) -> TextQueries:
    """The recorded answer, or for a collection written before it was recorded, the rule's from its fields."""
    if fingerprint.text_queries is not None:
        return fingerprint.text_queries
    return text_queries_for(
        has_text_tower=backbone_has_text_tower(fingerprint.backbone),
        pooling=fingerprint.pooling,
        alignment=fingerprint.alignment,
    )


def describe_text_queries(fingerprint: Fingerprint) -> str:
    """One line for ``info``: what the collection's text queries search, and why.

    >>> fp = Fingerprint(backbone="tiny-clip-random", weights_digest="0", random_weights=True, pooling="cls",
    ...     normalization="l2", alignment="lora", alignment_digest="1", base_dim=32, dim=32, text_queries="base")
    >>> describe_text_queries(fp)
    'base (aligned refused: a LoRA adapter changed the image tower, not the text tower: ...)'
    """
    queries = text_queries_of(fingerprint)
    why = _why(fingerprint, queries)
    if queries == "none":
        return f"none ({why})"
    if queries == "base":
        return f"base (aligned refused: {why})"
    return f"base (default) or aligned ({why})"


def check_text_space(fingerprint: Fingerprint, using: str, collection: str | None = None) -> None:
    """Refuse a text query of ``using`` vectors where the rule gives text no meaning (:class:`TextQueryError`).

    >>> fp = Fingerprint(backbone="tiny-vit-random", weights_digest="0", random_weights=True, pooling="cls",
    ...     normalization="l2", alignment="identity", alignment_digest="-", base_dim=64, dim=64)
    >>> check_text_space(fp, "base", "photos")
    Traceback (most recent call last):
    ...
    percep_rag.errors.TextQueryError: collection 'photos' takes no text query: backbone 'tiny-vit-random' has no ...
    """
    queries = text_queries_of(fingerprint)
    where = f"collection {collection!r}" if collection else f"a {fingerprint.backbone} embedder"
    if queries == "none":
        raise TextQueryError(f"{where} takes no text query: {_why(fingerprint, queries)}")
    if using == "aligned" and queries == "base":
        raise TextQueryError(f"{where} answers text queries in the base space only: {_why(fingerprint, queries)}")
    if using not in ("base", "aligned"):
        raise TextQueryError(f"a text query searches 'base' or 'aligned' vectors, not {using!r}")


def with_text_queries(described: dict) -> dict:
    """A collection's ``info`` fields (:func:`~percep_rag.store.describe.describe_collection`) with what
    its text queries search: ``fingerprint.text_queries`` (derived for collections written before it
    was recorded) and a ``text_queries`` line saying why."""
    fingerprint = Fingerprint.model_validate(described["fingerprint"])
    queries = text_queries_of(fingerprint)
    return {
        **described,
        "fingerprint": {**described["fingerprint"], "text_queries": queries},
        "text_queries": describe_text_queries(fingerprint),
    }
