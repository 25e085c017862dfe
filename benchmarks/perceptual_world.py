"""The perceptual-world study: base vs gLocal vs LoRA-HA (image- and patch-level).

Runs :func:`percep_rag.evaluation.study.run_study` over seeds and writes, under ``--out``:
``table.md`` (mean ± 95% CI), ``results.json`` (every seed's numbers), ``metrics.png``
(bar charts) and ``neighbours.png`` (query | base top-3 | LoRA-HA top-3 for counting,
like the paper's Figure 4).

    python benchmarks/perceptual_world.py --preset full --seeds 0 1 2 --out benchmarks/results/perceptual_world  # GPU
    python benchmarks/perceptual_world.py --preset small --seeds 0 1 --out /tmp/pw                               # CPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import torch

from percep_rag.evaluation.study import LOWER_IS_BETTER, METHODS, StudyConfig, run_study
from percep_rag.viz import metric_bars, retrieval_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("small", "full"), default="full")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/perceptual_world"))
    parser.add_argument("--device", default=None, help="override the preset's device")
    args = parser.parse_args()

    config = StudyConfig.small() if args.preset == "small" else StudyConfig()
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
    workdir = args.out / "work"
    result = run_study(config, args.seeds, workdir=workdir)
    seconds = time.perf_counter() - started
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else (platform.processor() or "cpu")
    header = (
        f"perceptual world, preset {args.preset}, seeds {args.seeds}, {datetime.date.today()}, {device}, "
        f"{seconds / 60:.1f} min; base semantic test accuracy "
        f"{[round(s.base_semantic_accuracy, 3) for s in result.seeds]}"
    )
    (args.out / "table.md").write_text(f"{header}\n\n{result.table()}\n")
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "header": header,
                "config": json.loads(config.model_dump_json()),
                "seeds": [{"seed": s.seed, "metrics": s.metrics, "base_semantic_accuracy": s.base_semantic_accuracy}
                          for s in result.seeds],
            },
            indent=1,
        )
    )  # fmt: skip
    table = {metric: {m: result.values(metric, m) for m in METHODS} for metric in result.metric_names}
    metric_bars(table, args.out / "metrics.png", title="perceptual world", lower_is_better=LOWER_IS_BETTER)
    _neighbour_grid(result, workdir, args.out / "neighbours.png")
    print(header)
    print(result.table())


def _neighbour_grid(result, workdir: Path, out: Path, rows: int = 4) -> None:
    seed = result.seeds[0]
    scenes = workdir / f"seed{seed.seed}"
    train = sorted((scenes / "scenes_train").glob("*.png"))
    test = sorted((scenes / "scenes_test").glob("*.png"))
    base, aligned = seed.examples["base"][:rows], seed.examples["lora-image"][:rows]
    retrieval_grid(
        [str(test[i]) for i in range(len(base))],
        [[str(train[j]) for j in row] for row in base],
        [[str(train[j]) for j in row] for row in aligned],
        out,
        headers=("query", "base top-3", "LoRA-HA top-3"),
        title="nearest train scenes (counting protocol)",
    )


if __name__ == "__main__":
    main()
