"""Make ``open_flamingo==2.0.1`` run correctly on transformers 5.x and torch 2.14.

Nothing here patches a class globally. :func:`apply_compat` changes the *instances* it is
given (the same technique open_flamingo itself uses, ``obj.__class__ = type(...)``), so a
plain ``Flamingo`` built elsewhere in the process keeps its original behaviour. It is
idempotent: applying it twice changes nothing the second time.

What it fixes, and why:

* ``FlamingoLMMixin.forward(self, input_ids, attention_mask, **kw)`` takes the mask as a
  required argument, but transformers 5 ``generate`` drops an all-ones mask, so unpadded
  generation (any batch of one) raised ``TypeError``. The compat mixin gives it a ``None``
  default. Its ``forward`` also *advertises the wrapped LM's own signature*: ``generate``
  reads ``inspect.signature(model.forward)`` to decide whether to build ``position_ids``
  from the mask, and the mixin's bare ``**kwargs`` hid them: left-padded rows then get
  positions shifted by their padding (harmless for RoPE/ALiBi LMs, wrong for LMs with
  absolute positions such as OPT).
* ``Flamingo.generate`` has no ``try/finally``: an exception inside it left the media
  cached, and every later ``forward(vision_x=...)`` failed. The compat ``generate`` always
  uncaches; :func:`cached_media` is the same guarantee for ``cache_media``.
* transformers 5 KV caches are mutable ``DynamicCache`` objects that every forward extends
  in place, so open_flamingo's eval recipe (reuse one prefix cache for every class name)
  scored class *j* with classes *1..j-1* still in context. :func:`repeat_cache` gives each
  class its own copy instead (``crop`` also changed meaning: only negative values now).
* OpenFlamingo hands the LM its KV cache as ``past_key_values``; transformers 5 renamed that
  keyword to ``cache`` (the old name warns, "will be removed in version 5.40.0"). The compat LM
  ``forward`` passes it on as ``cache`` when the LM's own ``forward`` takes that name, and
  :func:`output_cache` reads it back from an output under either name.
* :func:`check_checkpoint_keys`: ``load_state_dict(strict=False)`` hides naming mismatches
  and leaves the gates at 0, i.e. a text-only model; we check the keys precisely.
* :func:`remap_legacy_keys`: transformers 5 renamed some LM parameters (GPT-NeoX's output
  embedding ``embed_out`` is now ``lm_head``). Released checkpoints were saved with the old
  names, so without renaming, the output rows of ``<image>``/``<|endofchunk|>`` would stay
  random (HF renames these in ``from_pretrained``, which Flamingo checkpoints do not go through).

Not patched because inference does not reach them: ``_set_gradient_checkpointing``, FSDP
wrapping, and MPT's remote-code ``get_input_embeddings`` (we only build native HF LMs).
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from open_flamingo.src.flamingo import Flamingo
from open_flamingo.src.flamingo_lm import FlamingoLMMixin
from torch import nn

from percep_rag.vlm.openflamingo.errors import CheckpointMismatchError, MediaStateError

__all__ = [
    "CompatFlamingoLMMixin",
    "CompatFlamingoMixin",
    "apply_compat",
    "cached_media",
    "check_checkpoint_keys",
    "condition_media_batch",
    "extend_lm",
    "is_compat",
    "media_is_cached",
    "output_cache",
    "remap_legacy_keys",
    "repeat_cache",
    "uncache_media",
]


class CompatFlamingoLMMixin(FlamingoLMMixin):
    """``FlamingoLMMixin`` whose ``forward`` has an ``attention_mask=None`` default.

    Use it through :func:`extend_lm`, which also copies the LM's forward signature onto
    the combined class so that ``generate`` sees which arguments the LM accepts.
    """

    _percep_rag_compat = "lm"

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        return FlamingoLMMixin.forward(self, input_ids, attention_mask, **kwargs)


#: transformers' current name for the KV-cache keyword and output field (``past_key_values`` is deprecated).
CACHE_KEYWORD = "cache"
_LEGACY_CACHE_KEYWORD = "past_key_values"


def _rename_cache_keyword(kwargs: dict[str, Any], takes_cache: bool) -> dict[str, Any]:
    """``kwargs`` with OpenFlamingo's ``past_key_values`` renamed to ``cache`` for an LM that takes ``cache``.

    >>> _rename_cache_keyword({"past_key_values": None, "use_cache": True}, takes_cache=True)
    {'use_cache': True, 'cache': None}
    >>> _rename_cache_keyword({"past_key_values": None}, takes_cache=False)
    {'past_key_values': None}
    """
    if takes_cache and _LEGACY_CACHE_KEYWORD in kwargs:
        value = kwargs.pop(_LEGACY_CACHE_KEYWORD)
        if kwargs.get(CACHE_KEYWORD) is None:
            kwargs[CACHE_KEYWORD] = value
    return kwargs


def output_cache(output: Any) -> Any:
    """The KV cache of a model output, under transformers' current name or the deprecated one."""
    return output[CACHE_KEYWORD] if CACHE_KEYWORD in output else output.past_key_values


class CompatFlamingoMixin:
    """A ``Flamingo`` whose ``generate`` always uncaches its media, even when it raises."""

    _percep_rag_compat = "flamingo"

    def generate(self, vision_x: torch.Tensor, lang_x: torch.Tensor, attention_mask=None, **kwargs):
        """``Flamingo.generate`` with the media cleared in ``finally``."""
        try:
            return super().generate(vision_x, lang_x, attention_mask, **kwargs)
        finally:
            uncache_media(self)


def _has_mixin(obj: object, mixin: type) -> bool:
    # By marker, not identity: if this module is imported twice (pytest's importlib mode does
    # for doctests), a second copy of a mixin must still count as applied.
    marker = vars(mixin)["_percep_rag_compat"]
    return any(vars(klass).get("_percep_rag_compat") == marker for klass in type(obj).__mro__)


def _extend(obj: nn.Module, mixin: type, namespace: dict[str, Any] | None = None) -> None:
    """``open_flamingo.src.utils.extend_instance``, but a no-op when ``obj`` already has ``mixin``."""
    if _has_mixin(obj, mixin):
        return
    base = type(obj)
    # Same class name as the base, as extend_instance does, so reprs and HF logs stay readable.
    obj.__class__ = type(base.__name__, (mixin, base), dict(namespace or {}))


def extend_lm(lang_encoder: nn.Module) -> nn.Module:
    """Turn a HF causal LM (plain, or already extended by open_flamingo) into a compat Flamingo LM.

    Returns the same object, changed in place; a second call does nothing.

    >>> from transformers import GPTNeoXConfig, GPTNeoXForCausalLM
    >>> lm = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
    ...     num_hidden_layers=1, num_attention_heads=2))
    >>> lm = extend_lm(extend_lm(lm))
    >>> type(lm).__mro__[1] is CompatFlamingoLMMixin, "position_ids" in inspect.signature(lm.forward).parameters
    (True, True)
    """
    if _has_mixin(lang_encoder, CompatFlamingoLMMixin):
        return lang_encoder
    hf_forward = _hf_forward(type(lang_encoder))
    takes_cache = _takes_keyword(hf_forward, CACHE_KEYWORD)

    # A fresh function per class: its __signature__ must be this LM's, not a shared one.
    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        return FlamingoLMMixin.forward(self, input_ids, attention_mask, **_rename_cache_keyword(kwargs, takes_cache))

    try:
        forward.__signature__ = _with_mask_default(inspect.signature(hf_forward))
    except ValueError:  # an odd signature we cannot extend: keep the mixin's own
        pass
    _extend(lang_encoder, CompatFlamingoLMMixin, {"forward": forward})
    return lang_encoder


def _takes_keyword(function: Any, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _hf_forward(cls: type):
    """The first ``forward`` in the MRO that is not a Flamingo mixin's: the LM's own."""
    for klass in cls.__mro__:
        if issubclass(klass, FlamingoLMMixin) or "forward" not in vars(klass):
            continue
        return vars(klass)["forward"]
    raise TypeError(f"{cls.__name__} has no forward method")


def _with_mask_default(signature: inspect.Signature) -> inspect.Signature:
    params = list(signature.parameters.values())
    for index, param in enumerate(params):
        if param.name == "attention_mask" and param.default is inspect.Parameter.empty:
            params[index] = param.replace(default=None)
    if "attention_mask" not in signature.parameters:
        # generate only passes a mask to models whose forward names it; the mixin always takes one.
        position = 2 if len(params) >= 2 else len(params)
        params.insert(
            position, inspect.Parameter("attention_mask", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
        )
    return signature.replace(parameters=params)


def apply_compat(model: Flamingo) -> Flamingo:
    """Make an open_flamingo ``Flamingo`` instance compatible; idempotent, changes only this instance.

    >>> from percep_rag.vlm.openflamingo.tiny import build_tiny_flamingo
    >>> model = build_tiny_flamingo(seed=0).model
    >>> compat_class = type(model)                  # build_tiny_flamingo already applied it
    >>> apply_compat(model) is model, type(model) is compat_class, is_compat(model)
    (True, True, True)
    """
    if not isinstance(model, Flamingo):
        raise TypeError(f"apply_compat expects an open_flamingo Flamingo, got {type(model).__name__}")
    extend_lm(model.lang_encoder)
    _extend(model, CompatFlamingoMixin)
    return model


def is_compat(model: Flamingo) -> bool:
    """True when :func:`apply_compat` has been applied to ``model``."""
    return _has_mixin(model, CompatFlamingoMixin) and _has_mixin(model.lang_encoder, CompatFlamingoLMMixin)


# --------------------------------------------------------------------------- media state


def media_is_cached(model: Flamingo) -> bool:
    """Whether ``model`` holds cached media (``cache_media`` or an unfinished ``generate``)."""
    lm = model.lang_encoder
    return bool(getattr(lm, "_use_cached_vision_x", False)) or any(
        layer.vis_x is not None or layer.media_locations is not None for layer in lm._get_decoder_layers()
    )


def uncache_media(model: Flamingo) -> None:
    """Clear every media conditioning of ``model`` (safe to call when nothing is cached)."""
    model.lang_encoder.clear_conditioned_layers()
    model.lang_encoder._use_cached_vision_x = False


@contextmanager
def cached_media(model: Flamingo, input_ids: torch.Tensor, vision_x: torch.Tensor) -> Iterator[Flamingo]:
    """Encode ``vision_x`` once and condition on ``input_ids``'s media locations for the block.

    Inside, call ``model(vision_x=None, lang_x=..., clear_conditioned_layers=False)``: text
    with ``<image>`` tokens uses its own media locations, text without any attends to the
    last cached image. The media are uncached on exit, also on error.

    >>> import torch
    >>> from percep_rag.vlm.openflamingo.tiny import build_tiny_flamingo
    >>> tiny = build_tiny_flamingo(seed=0)
    >>> ids = tiny.tokenizer("<image>Output:", return_tensors="pt").input_ids
    >>> with cached_media(tiny.model, ids, torch.zeros(1, 1, 1, 3, 32, 32)):
    ...     media_is_cached(tiny.model)
    True
    >>> media_is_cached(tiny.model)
    False
    """
    if media_is_cached(model):
        raise MediaStateError("media are already cached on this model; uncache them first (uncache_media(model))")
    try:
        model.cache_media(input_ids=input_ids, vision_x=vision_x)
        yield model
    finally:
        uncache_media(model)


def condition_media_batch(model: Flamingo, media: torch.Tensor, media_locations: torch.Tensor, batch: int) -> None:
    """Condition every Flamingo layer on one row of media, broadcast to ``batch`` rows.

    Used after a single-row prefix forward, when the rows of a class batch all continue the
    same prompt: ``media`` is that row's ``(1, T_img, n, d)`` perceiver output and
    ``media_locations`` its ``(1, T_txt)`` media mask. ``expand`` makes views, no copies.
    """
    vis = media.expand(batch, *media.shape[1:])
    locations = media_locations.expand(batch, *media_locations.shape[1:])
    for layer in model.lang_encoder._get_decoder_layers():
        layer.condition_vis_x(vis)
        layer.condition_media_locations(locations)


def current_media(model: Flamingo) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(media, media_locations)`` the layers are conditioned on (raises if none)."""
    for layer in model.lang_encoder._get_decoder_layers():
        if layer.vis_x is not None and layer.media_locations is not None:
            return layer.vis_x, layer.media_locations
    raise MediaStateError("the model is not conditioned on any media")


# --------------------------------------------------------------------------- KV cache


def repeat_cache(cache: Any, repeats: int) -> Any:
    """An independent copy of a batch-1 KV cache, repeated ``repeats`` times along the batch.

    The original is left untouched, so it can seed further copies; every forward extends a
    transformers-5 ``DynamicCache`` in place, so sharing one would leak tokens across classes.

    >>> from transformers import DynamicCache
    >>> cache = DynamicCache()
    >>> _ = cache.update(torch.ones(1, 2, 3, 4), torch.ones(1, 2, 3, 4), 0)
    >>> copy_ = repeat_cache(cache, 5)
    >>> copy_.layers[0].keys.shape[0], cache.layers[0].keys.shape[0]
    (5, 1)
    """
    if isinstance(cache, tuple):  # legacy tuple-of-(k, v) caches (old or remote-code LMs)
        return tuple(tuple(t.repeat_interleave(repeats, dim=0) for t in layer) for layer in cache)
    copied = copy.deepcopy(cache)
    copied.batch_repeat_interleave(repeats)
    return copied


# --------------------------------------------------------------------------- checkpoints


def _aliases(model: nn.Module) -> dict[str, set[str]]:
    """state_dict key -> every key naming the same tensor (Flamingo registers layers twice)."""
    by_tensor: dict[int, set[str]] = {}
    names: dict[str, int] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        ident = id(tensor)
        by_tensor.setdefault(ident, set()).add(name)
        names[name] = ident
    return {name: by_tensor[ident] for name, ident in names.items()}


def _is_flamingo_key(key: str) -> bool:
    return key.startswith("perceiver.") or ".gated_cross_attn_layer." in key or ".gated_cross_attn_layers." in key


def check_checkpoint_keys(model: nn.Module, state_dict: Mapping[str, Any]) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state_dict`` fully loads into ``model``'s Flamingo parts.

    Every perceiver and gated cross-attention tensor must be in the checkpoint (under any of
    the names Flamingo registers it with), and every checkpoint key must exist in the model.
    Other missing keys (vision tower, frozen LM) are fine: released checkpoints omit them.

    >>> from percep_rag.vlm.openflamingo.tiny import build_tiny_flamingo
    >>> model = build_tiny_flamingo(seed=0).model
    >>> state = {k: v for k, v in model.state_dict().items() if k != "perceiver.latents"}
    >>> check_checkpoint_keys(model, state)
    Traceback (most recent call last):
    ...
    percep_rag.vlm.openflamingo.errors.CheckpointMismatchError: 1 perceiver/cross-attention keys missing ...latents. ...
    """
    aliases = _aliases(model)
    present = set(state_dict)
    missing: list[str] = []
    seen: set[str] = set()
    for key, group in aliases.items():
        if key in seen or not any(_is_flamingo_key(name) for name in group):
            continue
        seen |= group
        if not group & present:
            missing.append(_preferred_name(group))
    unexpected = sorted(present - set(aliases))
    if missing or unexpected:
        raise CheckpointMismatchError(sorted(missing), unexpected)


#: LM ``model_type`` -> (old name regex, new name) for names transformers 5 changed. transformers'
#: own table (``conversion_mapping``) is consulted too; this one is what we have tested.
LEGACY_LM_KEY_RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "gpt_neox": ((r"^embed_out\.", "lm_head."),),
}


def _lm_renames(lang_encoder: nn.Module) -> list[tuple[str, str]]:
    renames = list(LEGACY_LM_KEY_RENAMES.get(getattr(lang_encoder.config, "model_type", ""), ()))
    try:  # a private transformers API: use it when it is there, never depend on it
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
        from transformers.core_model_loading import WeightRenaming

        for name in (type(lang_encoder).__name__, lang_encoder.config.model_type):
            for rule in get_checkpoint_conversion_mapping(name) or ():
                if type(rule) is WeightRenaming and len(rule.source_patterns) == len(rule.target_patterns) == 1:
                    renames.append((rule.source_patterns[0], rule.target_patterns[0]))
    except Exception:  # noqa: BLE001 - any failure means "no extra renames"
        pass
    return renames


def remap_legacy_keys(model: Flamingo, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Rename checkpoint keys of the LM that older transformers versions named differently.

    A key is renamed only when the model lacks it and has the new name, so current
    checkpoints pass through unchanged.

    >>> from percep_rag.vlm.openflamingo.tiny import build_tiny_flamingo
    >>> model = build_tiny_flamingo(seed=0).model
    >>> list(remap_legacy_keys(model, {"lang_encoder.embed_out.weight": 0, "perceiver.latents": 1}))
    ['lang_encoder.lm_head.weight', 'perceiver.latents']
    """
    own = set(model.state_dict())
    renames = _lm_renames(model.lang_encoder)
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        if key not in own and key.startswith("lang_encoder."):
            inner = key.removeprefix("lang_encoder.")
            for pattern, replacement in renames:
                candidate = "lang_encoder." + re.sub(pattern, replacement, inner)
                if candidate != key and candidate in own:
                    key = candidate
                    break
        out[key] = value
    return out


def _preferred_name(group: set[str]) -> str:
    # Released checkpoints use "<layers attr>.<i>.gated_cross_attn_layer.*", so name that one.
    singular = [name for name in group if ".gated_cross_attn_layer." in name]
    return min(singular or group)
