"""The perceptual-world study: base vs gLocal vs LoRA-HA (image- and patch-level).

Runs :func:`percep_rag.study.run_study` over seeds and writes, under ``--out``:
``table.md`` (mean ± 95% t-interval over seeds, each seed a new world, base and fits),
``results.json`` (every seed's numbers, stage times, the config), ``metrics.png`` (bar
charts), ``neighbours_count.png`` (query | base top-3 | aligned top-3 train scenes,
captioned with their object counts, like the paper's Figure 4) and
``neighbours_instance.png`` (a re-rendered test scene | its base top-3 | aligned top-3
among the test scenes, the true instance framed green, like Figure 7).
The working files (scenes, triplets, the trained base and the adapters) stay in
``--out/work`` unless ``--clean``.

    python benchmarks/perceptual_world.py --preset gpu --seeds 0 1 2 --out benchmarks/results/perceptual_world_gpu
    python benchmarks/perceptual_world.py --preset cpu --seeds 0 1 2 --out benchmarks/results/perceptual_world_cpu
    python benchmarks/perceptual_world.py --preset small --seeds 0 --out /tmp/pw          # about 3 minutes
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from percep_rag.study import LOWER_IS_BETTER, METHODS, StudyConfig, StudyResult, run_study
from percep_rag.viz import metric_bars, retrieval_grid

PRESETS = {"small": StudyConfig.small, "cpu": StudyConfig.cpu, "gpu": StudyConfig}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/perceptual_world"))
    parser.add_argument("--device", default=None, help="override the preset's device (cpu, cuda)")
    parser.add_argument("--clean", action="store_true", help="delete --out/work when done")
    parser.add_argument(
        "--redraw", action="store_true", help="only redraw the figures from --out/results.json (and --out/work)"
    )
    args = parser.parse_args()
    if args.redraw:
        if not (args.out / "results.json").is_file():
            parser.error(f"--redraw needs {args.out / 'results.json'} from an earlier run")
        saved = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
        draw(StudyResult.from_dict(saved), args.out, saved["command"].split("--preset ")[1].split()[0])
        return

    config = PRESETS[args.preset]()
    if args.device:
        config = config.model_copy(
            update={
                "device": args.device,
                "backbone": config.backbone.model_copy(update={"device": args.device}),
                "glocal": config.glocal.model_copy(update={"device": args.device}),
                "lora": config.lora.model_copy(update={"device": args.device}),
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = run_study(config, args.seeds, workdir=args.out / "work", progress=False)
    minutes = (time.perf_counter() - started) / 60
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or 'x86'})"
    header = (
        f"perceptual world, preset {args.preset}, seeds {args.seeds}, {datetime.date.today()}, {device}, "
        f"{torch.get_num_threads()} threads, {minutes:.1f} min; base semantic test accuracy per seed "
        f"{[round(s.base_semantic_accuracy, 3) for s in result.seeds]} (chance 1/{len(config.shapes)})"
    )
    command = f"python benchmarks/perceptual_world.py --preset {args.preset} --seeds {' '.join(map(str, args.seeds))}"
    (args.out / "table.md").write_text(f"{header}\n\n`{command}`\n\n{result.table()}\n", encoding="utf-8")
    saved = {"header": header, "command": command, **result.to_dict()}
    # Neighbour rows of the first seed only: what the figures need, without megabytes per seed.
    for seed in saved["seeds"][1:]:
        seed["examples"] = {}
    (args.out / "results.json").write_text(json.dumps(saved, indent=1), encoding="utf-8")
    draw(result, args.out, args.preset)
    if args.clean:
        shutil.rmtree(args.out / "work")
    print(header)
    print(result.table())


def draw(result: StudyResult, out: Path, preset: str) -> None:
    """metrics.png, and the neighbour figures when the first seed's neighbours and scenes are at hand."""
    table = {metric: {m: result.values(metric, m) for m in METHODS} for metric in result.metric_names}
    title = (
        f"perceptual world, {preset} preset: mean and 95% t-interval over {len(result.seeds)} seeds "
        "(each a new world, base and fits)"
    )
    metric_bars(table, out / "metrics.png", title=title, lower_is_better=LOWER_IS_BETTER)
    if result.seeds[0].examples and (out / "work" / f"seed{result.seeds[0].seed}").is_dir():
        draw_neighbours(result, out / "work", out)


def best_aligned(result: StudyResult, metric: str) -> str:
    """The aligned method with the best mean ``metric`` over seeds."""
    sign = 1 if metric in LOWER_IS_BETTER else -1
    aligned = [m for m in METHODS if not m.startswith("base")]
    return min(aligned, key=lambda m: sign * float(np.mean(result.values(metric, m))))


def _objects(count: int) -> str:
    return f"{count} object" if count == 1 else f"{count} objects"


def draw_neighbours(result: StudyResult, workdir: Path, out: Path, rows: int = 5) -> None:
    """The two figures of the first seed: counting neighbours and instance retrieval."""
    seed = result.seeds[0]
    world = result.config.world(seed.seed)
    train_counts = world.subset("train").labels("count")
    test_counts = world.subset("test").labels("count")
    scenes = workdir / f"seed{seed.seed}"
    train = sorted((scenes / "scenes_train").glob("*.png"))
    test = sorted((scenes / "scenes_test").glob("*.png"))
    jittered = sorted((scenes / "scenes_test_jitter").glob("*.png"))

    counter = best_aligned(result, "count MAE")
    base = "base-patch" if counter.endswith("patch") else "base"
    chosen = range(min(rows, len(test)))
    near = {m: [seed.examples[m]["count"][i] for i in chosen] for m in (base, counter)}
    retrieval_grid(
        [str(test[i]) for i in chosen],
        [[str(train[j]) for j in row] for row in near[base]],
        [[str(train[j]) for j in row] for row in near[counter]],
        out / "neighbours_count.png",
        query_captions=[_objects(test_counts[i]) for i in chosen],
        base_captions=[[_objects(train_counts[j]) for j in row] for row in near[base]],
        aligned_captions=[[_objects(train_counts[j]) for j in row] for row in near[counter]],
        base_correct=[
            [train_counts[j] == test_counts[i] for j in row] for i, row in zip(chosen, near[base], strict=True)
        ],
        aligned_correct=[
            [train_counts[j] == test_counts[i] for j in row] for i, row in zip(chosen, near[counter], strict=True)
        ],
        headers=("test scene", f"{base} top-3", f"{counter} top-3"),
        title=f"counting by nearest train scenes (seed {seed.seed}; green: same count)",
    )

    finder = best_aligned(result, "recall@1")
    base = "base-patch" if finder.endswith("patch") else "base"
    # Show queries where the two spaces disagree first: that is where the picture says something.
    order = sorted(
        range(len(test)), key=lambda i: seed.examples[base]["instance"][i][0] == seed.examples[finder]["instance"][i][0]
    )[: min(rows, len(test))]
    ranks = {m: [seed.examples[m]["instance"][i] for i in order] for m in (base, finder)}
    retrieval_grid(
        [str(jittered[i]) for i in order],
        [[str(test[j]) for j in row] for row in ranks[base]],
        [[str(test[j]) for j in row] for row in ranks[finder]],
        out / "neighbours_instance.png",
        query_captions=["re-rendered"] * len(order),
        base_correct=[[j == i for j in row] for i, row in zip(order, ranks[base], strict=True)],
        aligned_correct=[[j == i for j in row] for i, row in zip(order, ranks[finder], strict=True)],
        headers=("query (jittered)", f"{base} top-3", f"{finder} top-3"),
        title=f"instance retrieval among test scenes (seed {seed.seed}; green: the same scene)",
    )


if __name__ == "__main__":
    main()
