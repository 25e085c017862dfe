"""Size the triplet-source ablation's default run by its power (issue 41).

Two steps, both reproducible:

``pilot``: run a few seeds of the ablation at one size (train triplets per kind, LoRA
epochs), one torch thread, and record each seed's per-seed values and CPU seconds
(``time.process_time``: a loaded machine inflates it far less than wall time) in
``--out/results.json`` (resumable: seeds already there are kept). The shared base is trained
once into ``--base`` and loaded by every later pilot (it does not depend on the triplets).

    OMP_NUM_THREADS=1 python benchmarks/triplet_ablation_power.py pilot --train 1200 --epochs 2 \\
        --seed 0 --seed 1 --seed 2 --seed 3 --seed 4 --out /tmp/pilot_1200_2 --base /tmp/pilot_base

``size``: read pilot folders, and for each size the paired mid-level minus semantic contrast's
per-seed spread on the sized cells, the seeds that bring every cell's 95% half-width to the
target, and the wall time that takes on 2 idle cores; print the reasoning and the choice
(:func:`percep_rag.study.ablation_power.choose_size`).

    python benchmarks/triplet_ablation_power.py size benchmarks/results/triplet_ablation_power/*/
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from percep_rag.study.ablation import AblationConfig, AblationResult, ablation_base, run_ablation_seed
from percep_rag.study.ablation_power import PLANNING_MINUTES


def pilot(args: argparse.Namespace) -> None:
    import torch

    from percep_rag.cli.study import cpu_name

    torch.set_num_threads(1)
    config = AblationConfig.at_size(args.train, args.epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "results.json"
    done = AblationResult.from_dict(json.loads(saved.read_text())).seeds if saved.is_file() else []
    args.base.mkdir(parents=True, exist_ok=True)
    base_info = args.base / "base_cpu.json"
    started = time.process_time()
    base = ablation_base(config, config.base_seed, args.base / "model")
    if not base_info.is_file():
        base_info.write_text(json.dumps({"cpu_seconds": round(time.process_time() - started, 2), "cpu": cpu_name()}))
    for seed in args.seed:
        if seed in {s.seed for s in done}:
            continue
        with tempfile.TemporaryDirectory() as work:
            done.append(run_ablation_seed(config, seed, Path(work), base=base))
        cpu_seconds = done[-1].cpu_seconds
        done.sort(key=lambda s: s.seed)
        data = {
            "header": f"pilot {args.train} triplets / {args.epochs} LoRA epochs, 1 torch thread, {cpu_name()}, "
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
            f"load {' '.join(f'{v:.1f}' for v in os.getloadavg())}",
            "base_cpu_seconds": json.loads(base_info.read_text())["cpu_seconds"],
            **AblationResult(config, done).to_dict(),
        }
        saved.write_text(json.dumps(data, indent=1))
        print(f"seed {seed}: {cpu_seconds:.1f} CPU s", flush=True)


def size(args: argparse.Namespace) -> None:
    from percep_rag.study.ablation_power import calibrate_wall_per_cpu, choose_size, load_pilot, sizing_report

    pilots = [load_pilot(folder) for folder in args.folders]
    wall_per_cpu = args.wall_per_cpu
    if wall_per_cpu is None:  # the idle run against the pilot of its size
        idle = AblationResult.from_dict(json.loads((args.idle / "results.json").read_text()))
        runs = [AblationResult.from_dict(json.loads((f / "results.json").read_text())) for f in args.folders]
        same = [run for run in runs if run.config == idle.config]
        if not same:
            raise SystemExit(f"no pilot has the size of {args.idle}: give --wall-per-cpu")
        wall_per_cpu = calibrate_wall_per_cpu(idle, same[0])
        print(f"calibration: {args.idle} (idle 2-core wall) against the pilot of its size: {wall_per_cpu:.3f}")
    choice = choose_size(pilots, budget_minutes=args.budget, target=args.target, wall_per_cpu=wall_per_cpu)
    print(sizing_report(choice))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(required=True)
    run = commands.add_parser("pilot", help="run seeds at one size, recording CPU seconds")
    run.add_argument("--train", type=int, required=True, help="train triplets per kind (val: a quarter)")
    run.add_argument("--epochs", type=int, required=True, help="LoRA epochs")
    run.add_argument("--seed", type=int, action="append", required=True)
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--base", type=Path, required=True, help="folder of the shared base (trained once)")
    run.set_defaults(handler=pilot)
    choose = commands.add_parser("size", help="choose the default size from pilot folders")
    choose.add_argument("folders", type=Path, nargs="+")
    choose.add_argument(
        "--budget", type=float, default=PLANNING_MINUTES, help="wall minutes on 2 idle cores (default: 20 less 10%%)"
    )
    choose.add_argument("--target", type=float, default=0.02)
    choose.add_argument("--wall-per-cpu", type=float, default=None, help="idle 2-core wall s per 1-thread CPU s")
    choose.add_argument(
        "--idle", type=Path, default=Path(__file__).parent / "results" / "triplet_ablation_cpu",
        help="an idle 2-core run (its stage seconds) to calibrate --wall-per-cpu against the pilot of its size",
    )  # fmt: skip
    choose.set_defaults(handler=size)
    args = parser.parse_args()
    args.handler(args)


if __name__ == "__main__":
    main()
