"""Few-shot prompting on your own labelled images, in one script.

Point it at a folder of labelled images (``folder/<label>/<image>``) and one or more query
images: it indexes the folder (once; re-runs reuse the store), retrieves the k most similar
examples for each query (most similar last, as OpenFlamingo's RICES), prints the
prompt, and, with a VLM, the class the VLM ranks first. The VLM is any ``--vlm`` spec
(:func:`percep_rag.vlm.load_vlm`); without one the prompt shown is OpenFlamingo's layout.

    python integrations/fewshot_prompting.py my_photos/ query1.jpg query2.jpg \\
        --backbone dreamsim-ensemble --vlm smolvlm:HuggingFaceTB/SmolVLM-256M-Instruct

    python integrations/fewshot_prompting.py my_photos/ query1.jpg query2.jpg \\
        --backbone dreamsim-ensemble --vlm OpenFlamingo-4B-vitl-rpj3b \\
        --vlm-checkpoint ~/weights/of4b/checkpoint.pt --vlm-lang ~/weights/redpajama-3b

    # no weights at hand? everything runs on random test models (results are meaningless):
    python integrations/fewshot_prompting.py my_photos/ query.jpg --backbone tiny-vit-random --vlm tiny-smolvlm-random
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.config import PRECISIONS
from percep_rag.datasets.records import scan_folder
from percep_rag.indexing import index_records
from percep_rag.retrieval import ExampleRetriever
from percep_rag.store import open_store
from percep_rag.vlm.openflamingo.prompt import PromptTemplate, build_prompt


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and a hint (exit code 2), as with `percep-rag`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\nhint: see '{self.prog} --help'\n")


def _shots(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000, got {text}")
    return value


def main() -> None:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="labelled images: folder/<label>/<image>")
    parser.add_argument("queries", nargs="+", help="query images")
    parser.add_argument("--backbone", default="dreamsim-ensemble")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--alignment", default="identity", help="identity | glocal:<file> | lora:<dir>")
    parser.add_argument("--using", choices=("aligned", "base"), default="aligned")
    parser.add_argument("--shots", type=_shots, default=3)
    parser.add_argument("--store", default=None, help="store spec (default: <folder>/.percep_rag_store, Edge)")
    parser.add_argument(
        "--vlm",
        default=None,
        help="smolvlm:<dir or hub id>, idefics3:<dir or hub id>, openflamingo:<release> (or a bare release name), "
        "tiny-smolvlm-random, tiny-flamingo-random",
    )
    parser.add_argument("--vlm-checkpoint", default=None, help="OpenFlamingo only")
    parser.add_argument("--vlm-lang", default=None, help="OpenFlamingo only")
    parser.add_argument("--vlm-vision-weights", default=None, help="OpenFlamingo only")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="auto: bf16 on AMX/AVX-512 BF16 CPUs")
    args = parser.parse_args()

    embedder = AlignedEmbedder.from_spec(
        EmbedderSpec(
            backbone=args.backbone,
            weights=args.weights,
            alignment=args.alignment,
            device=args.device,
            precision=args.precision,
        )
    )
    records = scan_folder(args.folder)
    labels = sorted({r.label for r in records if r.label})
    if not labels:
        parser.error(f"{args.folder} has no labelled images (expected folder/<label>/<image>)")
    classifier = None
    if args.vlm:
        from percep_rag.vlm import load_vlm

        classifier = load_vlm(
            args.vlm,
            checkpoint=args.vlm_checkpoint,
            lang=args.vlm_lang,
            vision_weights=args.vlm_vision_weights,
            device=str(embedder.device),
            precision=args.precision,
        )
    store_spec = args.store or f"edge:{args.folder / '.percep_rag_store'}"
    with open_store(store_spec) as store:
        print(index_records(records, embedder=embedder, store=store, collection="examples", progress=True))
        retriever = ExampleRetriever(store, "examples", embedder)
        found = retriever.examples_batch(args.queries, k=args.shots, using=args.using, labelled_only=True)
        for query, examples in zip(args.queries, found, strict=True):
            pairs = [(example.uri, example.label) for example in examples]
            # The VLM's own prompt; without one, OpenFlamingo's layout shows what retrieval feeds a VLM.
            prompt = classifier.prompt_text(pairs) if classifier else build_prompt(pairs, PromptTemplate())[0]
            print(f"\n== {query}")
            for example in examples:
                print(f"  {example.score:.3f}  {example.label:<20} {example.uri}")
            print(f"  prompt: {prompt}")
            if classifier is not None:
                print(f"  prediction: {classifier.predict(pairs, query, labels)}")
    if embedder.backbone.random_weights or getattr(classifier, "random_weights", False):
        print("\nNOTE: random weights were used; the retrievals and predictions above are meaningless.")


if __name__ == "__main__":
    from percep_rag.cli.errors import run_script

    run_script(main)  # every mistake is one line and an exit code, as with `percep-rag`
