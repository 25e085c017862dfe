"""The released OpenFlamingo models, one registry of them (name -> :class:`FlamingoRelease`)."""

from __future__ import annotations

from dataclasses import dataclass

from percep_rag.backbones.weights import HubFile
from percep_rag.registry import Registry

__all__ = ["DEFAULT_RELEASE", "RELEASES", "FlamingoRelease", "get_release", "list_releases", "register_release"]


@dataclass(frozen=True)
class FlamingoRelease:
    """One released OpenFlamingo model (README table of mlfoundations/open_flamingo)."""

    name: str
    hub_repo: str
    lm_repo: str
    cross_attn_every_n_layers: int
    decoder_layers_attr: str
    #: transformers has a native class for the LM (no ``trust_remote_code``).
    native_lm: bool
    checkpoint_file: str = "checkpoint.pt"
    #: open_clip config; ``-quickgelu`` because open_clip 3 no longer switches to it for "openai".
    vision_model: str = "ViT-L-14-quickgelu"
    #: percep-rag backbone whose weight lookup finds the CLIP file (same OpenAI ViT-L/14).
    vision_backbone: str = "clip-vit-l-14"

    @property
    def checkpoint_hub(self) -> HubFile:
        return HubFile(self.hub_repo, (self.checkpoint_file,))


#: Release name -> :class:`FlamingoRelease` (a read-only mapping; add one with :func:`register_release`).
RELEASES: Registry[FlamingoRelease] = Registry("OpenFlamingo release")


def register_release(release: FlamingoRelease) -> FlamingoRelease:
    """Make ``release`` loadable by name with :func:`~percep_rag.vlm.openflamingo.load_openflamingo`."""
    RELEASES.register(release.name, release)
    return release


def get_release(name: str) -> FlamingoRelease:
    """The registered release ``name``; an unknown name lists the known ones.

    >>> get_release("OpenFlamingo-4B-vitl-rpj3b").cross_attn_every_n_layers
    2
    """
    return RELEASES.get(name)


def list_releases() -> list[str]:
    """Names of the registered OpenFlamingo releases.

    >>> "OpenFlamingo-9B-vitl-mpt7b" in list_releases()
    True
    """
    return RELEASES.names()


for _release in (
    FlamingoRelease(
        "OpenFlamingo-4B-vitl-rpj3b",
        "openflamingo/OpenFlamingo-4B-vitl-rpj3b",
        "togethercomputer/RedPajama-INCITE-Base-3B-v1",
        2,
        "gpt_neox.layers",
        native_lm=True,
    ),
    FlamingoRelease(
        "OpenFlamingo-4B-vitl-rpj3b-langinstruct",
        "openflamingo/OpenFlamingo-4B-vitl-rpj3b-langinstruct",
        "togethercomputer/RedPajama-INCITE-Instruct-3B-v1",
        2,
        "gpt_neox.layers",
        native_lm=True,
    ),
    FlamingoRelease(
        "OpenFlamingo-3B-vitl-mpt1b",
        "openflamingo/OpenFlamingo-3B-vitl-mpt1b",
        "anas-awadalla/mpt-1b-redpajama-200b",
        1,
        "transformer.blocks",
        native_lm=False,
    ),
    FlamingoRelease(
        "OpenFlamingo-3B-vitl-mpt1b-langinstruct",
        "openflamingo/OpenFlamingo-3B-vitl-mpt1b-langinstruct",
        "anas-awadalla/mpt-1b-redpajama-200b-dolly",
        1,
        "transformer.blocks",
        native_lm=False,
    ),
    FlamingoRelease(
        "OpenFlamingo-9B-vitl-mpt7b",
        "openflamingo/OpenFlamingo-9B-vitl-mpt7b",
        "anas-awadalla/mpt-7b",
        4,
        "transformer.blocks",
        native_lm=False,
    ),
):
    register_release(_release)
#: The only release whose LM (GPT-NeoX) needs no remote code on transformers 5.
DEFAULT_RELEASE = "OpenFlamingo-4B-vitl-rpj3b"
