"""Alignment kinds by name: one registry, the kinds stated once, one device rule."""

from __future__ import annotations

import pytest

from percep_rag.alignment import ALIGNMENTS, IdentityAlignment, list_alignments, load_alignment, register_alignment
from percep_rag.alignment.glocal import GlocalFitConfig
from percep_rag.alignment.lora import LoraFitConfig
from percep_rag.config import ALIGNMENT_KINDS, AlignmentSpec
from percep_rag.errors import AlignmentError, ConfigError, UnknownNameError


def test_the_registry_holds_exactly_the_configurable_kinds():
    assert list_alignments() == list(ALIGNMENT_KINDS) == ["identity", "glocal", "lora", "dreamsim"]
    assert isinstance(load_alignment("identity"), IdentityAlignment)
    assert isinstance(load_alignment(AlignmentSpec()), IdentityAlignment)


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="known alignment kinds: identity, glocal, lora"):
        load_alignment("pca:x.npz")
    with pytest.raises(UnknownNameError, match="known alignment kinds: identity, glocal, lora"):
        ALIGNMENTS.get("pca")


def test_a_kind_registers_once():
    with pytest.raises(ConfigError, match="registered twice"):
        register_alignment("glocal", lambda path: IdentityAlignment())


def test_loading_goes_through_the_registered_loader(tmp_path):
    with pytest.raises(AlignmentError, match="no such gLocal transform file"):
        load_alignment(f"glocal:{tmp_path / 'missing.safetensors'}")
    with pytest.raises(AlignmentError, match="not a percep-rag LoRA adapter"):
        load_alignment(f"lora:{tmp_path}")


@pytest.mark.parametrize("config", [GlocalFitConfig, LoraFitConfig])
def test_fit_configs_check_devices_like_resolve_device(config):
    assert config(device="CUDA:1").device == "cuda:1"  # spelling only: no GPU needed to write a config
    for bad in ("gpu", "tpu", "cuda:x", "cpu:0"):
        with pytest.raises(ValueError, match="unknown device"):
            config(device=bad)
