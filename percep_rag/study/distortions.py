"""Variations of a scene by random edits of its count, layout, colour, shapes or background.

>>> from percep_rag.study.sampling import sample_scene
>>> ref = sample_scene(np.random.default_rng(0), count=3)
>>> distort(ref, np.random.default_rng(0), edits=["colour"]).count
3
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from percep_rag.study.sampling import (
    LAYOUT_MAX_COUNT,
    contrasting_colours,
    place_free,
    random_rotation,
    sample_positions,
)
from percep_rag.study.scenes import (
    BACKGROUND_COLOURS,
    LAYOUTS,
    MAX_OBJECTS,
    SHAPES,
    TEXTURES,
    SceneError,
    SceneObject,
    SceneSpec,
)

EDITS: tuple[str, ...] = ("count", "layout", "colour", "shape", "background")


def distort(
    scene: SceneSpec,
    rng: np.random.Generator,
    *,
    n_edits: int = 1,
    edits: Sequence[str] = EDITS,
    instance_id: int | None = None,
    keep_category: bool = True,
) -> SceneSpec:
    """A variation of ``scene`` made by ``n_edits`` random edits from ``edits``:

    ``count`` (add or remove 1-3 objects), ``layout`` (move some objects, or re-lay out
    all of them), ``colour`` (recolour some objects), ``shape`` (swap minority shapes,
    invisible to the judge) and ``background`` (colour or texture). With
    ``keep_category`` the majority shape survives every edit, as NIGHTS' variations all
    come from one prompt.

    >>> from percep_rag.study.sampling import sample_scene
    >>> ref = sample_scene(np.random.default_rng(0), category="hexagon", count=4)
    >>> variant = distort(ref, np.random.default_rng(1), n_edits=2)
    >>> variant.category, variant != ref
    ('hexagon', True)
    """
    unknown = [edit for edit in edits if edit not in EDITS]
    if unknown or not edits:
        raise SceneError(f"edits must be a non-empty subset of {EDITS}, got {list(edits)}")
    if n_edits < 1:
        raise SceneError(f"n_edits must be >= 1, got {n_edits}")
    category = scene.category
    for _attempt in range(50):
        out = scene
        for _ in range(n_edits):
            out = _EDIT_FUNCTIONS[edits[int(rng.integers(len(edits)))]](out, rng)
        if out != scene and (not keep_category or (out.category == category and out.has_majority)):
            return replace(out, instance_id=scene.instance_id if instance_id is None else instance_id)
    raise SceneError(f"could not distort scene {scene.instance_id} with edits {list(edits)} keeping its category")


def _edit_count(scene: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    objects = list(scene.objects)
    change = int(rng.integers(1, 4))
    if len(objects) == 1 or (len(objects) < MAX_OBJECTS and rng.random() < 0.5):
        change = min(change, MAX_OBJECTS - len(objects))
        radius = float(np.mean([o.size for o in objects]))
        taken = [(o.x, o.y, o.size) for o in objects]
        spots = place_free([radius * 1.15] * change, rng, taken=taken) or []
        colours = list(scene.colour_counts())
        for x, y in spots:
            # New objects look like the scene's: its majority shape, its palette.
            shape = scene.category if rng.random() < 0.75 else SHAPES[int(rng.integers(len(SHAPES)))]
            colour = colours[int(rng.integers(len(colours)))]
            objects.append(
                SceneObject(shape, colour, x, y, radius * float(rng.uniform(0.85, 1.15)), random_rotation(rng))
            )
    else:
        change = min(change, len(objects) - 1)
        for index in sorted(rng.choice(len(objects), size=change, replace=False).tolist(), reverse=True):
            objects.pop(index)
    return replace(scene, objects=tuple(objects))


def _edit_layout(scene: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    objects = list(scene.objects)
    if rng.random() < 0.5:
        # Re-lay out everything, with a (possibly) different arrangement.
        fitting = [name for name in LAYOUTS if LAYOUT_MAX_COUNT[name] >= len(objects)]
        layout = fitting[int(rng.integers(len(fitting)))]
        radius = float(np.mean([o.size for o in objects]))
        centres, fitted = sample_positions(layout, len(objects), radius, rng)
        scale = fitted / radius
        order = rng.permutation(len(objects))
        moved = [
            replace(objects[i], x=float(x), y=float(y), size=objects[i].size * scale)
            for i, (x, y) in zip(order, centres, strict=True)
        ]
        return replace(scene, objects=tuple(moved), layout=layout)
    # Move a few objects to free spots.
    n_move = int(rng.integers(1, len(objects) + 1))
    chosen = set(rng.choice(len(objects), size=n_move, replace=False).tolist())
    keep = [(o.x, o.y, o.size) for i, o in enumerate(objects) if i not in chosen]
    spots = place_free([objects[i].size for i in sorted(chosen)], rng, taken=keep)
    if spots is None:
        return scene
    for i, (x, y) in zip(sorted(chosen), spots, strict=True):
        objects[i] = replace(objects[i], x=x, y=y)
    return replace(scene, objects=tuple(objects), layout="scatter")


def _edit_colour(scene: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    usable = contrasting_colours(scene.background)
    objects = list(scene.objects)
    if rng.random() < 0.4:
        # Swap one palette colour for another everywhere it is used.
        old = list(scene.colour_counts())[int(rng.integers(len(scene.colour_counts())))]
        new = usable[int(rng.integers(len(usable)))]
        return replace(scene, objects=tuple(replace(o, colour=new) if o.colour == old else o for o in objects))
    n_change = int(rng.integers(1, len(objects) + 1))
    new = usable[int(rng.integers(len(usable)))]
    for i in rng.choice(len(objects), size=n_change, replace=False).tolist():
        objects[i] = replace(objects[i], colour=new)
    return replace(scene, objects=tuple(objects))


def _edit_shape(scene: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    objects = list(scene.objects)
    i = int(rng.integers(len(objects)))
    objects[i] = replace(objects[i], shape=SHAPES[int(rng.integers(len(SHAPES)))], rotation=random_rotation(rng))
    return replace(scene, objects=tuple(objects))


def _edit_background(scene: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    if rng.random() < 0.5:
        return replace(scene, texture=TEXTURES[int(rng.integers(len(TEXTURES)))])
    background = list(BACKGROUND_COLOURS)[int(rng.integers(len(BACKGROUND_COLOURS)))]
    usable = contrasting_colours(background)
    # Objects that would vanish into the new background take a colour that still shows.
    objects = tuple(
        o if o.colour in usable else replace(o, colour=usable[int(rng.integers(len(usable)))]) for o in scene.objects
    )
    return replace(scene, background=background, objects=objects)


_EDIT_FUNCTIONS = {
    "count": _edit_count,
    "layout": _edit_layout,
    "colour": _edit_colour,
    "shape": _edit_shape,
    "background": _edit_background,
}
