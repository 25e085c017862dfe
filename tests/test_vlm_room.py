"""The VLM room: every backend in percep_rag.vlm, the few-shot protocol in percep_rag.fewshot, imports one way."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import percep_rag

PACKAGE = Path(percep_rag.__file__).parent
#: What only model code imports: none of it belongs in the protocol's package.
MODEL_LIBRARIES = {"torch", "transformers", "open_flamingo", "open_clip", "timm"}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports inside functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_vlm_never_imports_fewshot():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(name for name in _imports(path) if name.startswith("percep_rag.fewshot"))
        for path in (PACKAGE / "vlm").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_fewshot_holds_no_model_code():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(name for name in _imports(path) if name.split(".")[0] in MODEL_LIBRARIES)
        for path in (PACKAGE / "fewshot").glob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_every_backend_module_is_in_vlm():
    assert not (PACKAGE / "fewshot" / "openflamingo").exists()
    for module in ("backend", "classify", "compat", "model", "prompt", "releases", "tiny", "errors"):
        assert (PACKAGE / "vlm" / "openflamingo" / f"{module}.py").is_file(), module


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ("percep_rag.fewshot", "percep_rag.vlm.openflamingo", ["FewShotClassifier", "build_tiny_flamingo"]),
        ("percep_rag.fewshot.classify", "percep_rag.vlm.openflamingo.classify", ["FewShotClassifier"]),
        ("percep_rag.fewshot.compat", "percep_rag.vlm.openflamingo.compat", ["apply_compat", "repeat_cache"]),
        ("percep_rag.fewshot.flamingo", "percep_rag.vlm.openflamingo.model", ["load_openflamingo", "MEDIA_TOKEN"]),
        ("percep_rag.fewshot.tiny", "percep_rag.vlm.openflamingo.tiny", ["build_tiny_flamingo", "make_test_image"]),
        ("percep_rag.fewshot.releases", "percep_rag.vlm.openflamingo.releases", ["get_release", "RELEASES"]),
        ("percep_rag.fewshot.errors", "percep_rag.vlm.openflamingo.errors", ["CheckpointMismatchError"]),
        ("percep_rag.fewshot.prompt", "percep_rag.vlm.openflamingo.prompt", ["PromptTemplate", "build_prompt"]),
    ],
)
def test_old_import_paths_name_the_same_objects(old, new, names):
    pytest.importorskip("open_flamingo")
    before, after = importlib.import_module(old), importlib.import_module(new)
    assert all(getattr(before, name) is getattr(after, name) for name in names)
