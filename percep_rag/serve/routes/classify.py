"""``POST /collections/{name}/classify``: a VLM prompted with examples retrieved from the collection.

The VLM is any object with ``predict(examples, query, class_names) -> str`` and
``score_classes(examples, query, class_names) -> array`` (a
:class:`~percep_rag.vlm.openflamingo.classify.FewShotClassifier`); one request uses it at a time.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from percep_rag.serve.answers import hit_json, jsonable
from percep_rag.serve.errors import ApiError
from percep_rag.serve.inputs import check_form, indexed_image_bytes, read_filter, read_query
from percep_rag.serve.routes.search import FILTER_HELP, image_url

router = APIRouter(tags=["classify"])


@router.post(
    "/collections/{name}/classify",
    dependencies=[Depends(check_form)],
    summary="Few-shot classification of an image, with the retrieved examples it used",
)
async def classify(
    request: Request,
    name: str,
    image: UploadFile | None = File(None, description="The query image (multipart upload)."),
    point: str | None = Form(None, description="Or: the id of a stored point to classify."),
    shots: int = Form(3, ge=0, le=32, description="Retrieved examples in the prompt (0: zero-shot)."),
    using: Literal["aligned", "base"] = Form("aligned", description="The vectors the examples are retrieved by."),
    diversity: float = Form(0.0, ge=0.0, le=1.0, description="Trade similarity for variety (MMR; 0 = nearest)."),
    classes: str | None = Form(None, description="Comma-separated class names (default: the labels in the pool)."),
    zero_shot_style: Literal["plain", "openflamingo"] = Form("plain", description="With shots=0, as `classify`."),
    scores: bool = Form(False, description="Also return every class's score."),
    filter: list[str] = Form([], description=FILTER_HELP),
) -> dict[str, Any]:
    """The predicted class, the class names it chose among and the examples (most similar last)."""
    from percep_rag.fewshot.prompt import demonstrations_needed, prompt_examples

    state = request.app.state
    if state.vlm is None:
        raise ApiError(501, "no VLM is configured: start `percep-rag serve` with --vlm to classify", "no_vlm")
    retriever = state.catalog.retriever(name)
    store = retriever.store
    settings = state.settings
    query = await read_query(image, point, store, name, settings, state.catalog.run)

    def run() -> dict[str, Any]:
        flt = read_filter(store, name, filter)
        data = query.image if query.point is None else indexed_image_bytes(store, name, query.point)[1]
        names = [n.strip() for n in (classes or "").split(",") if n.strip()] or state.catalog.class_names(name, flt)
        if not names:
            raise ApiError(422, f"no class names: send classes, or index labelled images into {name!r}")
        demos = demonstrations_needed(shots, zero_shot_style)
        exclude = [query.point] if query.point else []
        found = retriever.examples(
            data, k=demos, using=using, diversity=diversity, filter=flt, exclude_ids=exclude, labelled_only=True
        )
        shown = prompt_examples([(example.uri, example.label or example.text) for example in found], shots)
        with state.vlm_lock:
            prediction = state.vlm.predict(shown, data, names)
            class_scores = state.vlm.score_classes(shown, data, names) if scores else None
        return {"flt": flt, "names": names, "found": found, "prediction": prediction, "scores": class_scores}

    done = await state.catalog.run(run)
    random = bool(retriever.embedder.fingerprint.random_weights or getattr(state.vlm, "random_weights", False))
    answer: dict[str, Any] = {
        "collection": name,
        "query": query.describe(),
        "prediction": str(done["prediction"]),
        "classes": done["names"],
        "shots": shots,
        "using": using,
        "filter": done["flt"],
        "random_weights": random,
        "examples": [
            hit_json(example, rank, image_url(request, name, example.id)) | {"text": example.text}
            for rank, example in enumerate(done["found"], start=1)
        ],
    }
    if done["scores"] is not None:
        answer["scores"] = dict(zip(done["names"], jsonable(done["scores"]), strict=True))
    if random:
        answer["note"] = "random weights were used: predictions are meaningless outside tests"
    return answer
