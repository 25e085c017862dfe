"""Merge triplet-source ablation runs made seed by seed (e.g. in parallel processes) into one
table and figure, as ``percep-rag study ablation`` writes for a single run.

Each input folder is the ``--out`` of one ``percep-rag study ablation --seed N`` run (its
``results.json``); all must be of the same size/config and hold different seeds.

    percep-rag study ablation --seed 0 --out /tmp/s0 &   # one process per seed
    percep-rag study ablation --seed 1 --out /tmp/s1 &
    python benchmarks/triplet_ablation_merge.py /tmp/s0 /tmp/s1 --out benchmarks/results/triplet_ablation_cpu
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from percep_rag.cli.study import cpu_name
from percep_rag.study.ablation import AblationResult
from percep_rag.study.ablation_report import ablation_report, draw_ablation


def merge(folders: list[Path]) -> tuple[AblationResult, list[str]]:
    """The seeds of every folder's ``results.json`` as one result, and their headers."""
    results, headers = [], []
    for folder in folders:
        data = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        results.append(AblationResult.from_dict(data))
        headers.append(data["header"])
    config = results[0].config
    if any(result.config != config for result in results):
        raise SystemExit("the runs are of different sizes or configs")
    seeds = [seed for result in results for seed in result.seeds]
    if len({seed.seed for seed in seeds}) != len(seeds):
        raise SystemExit("a seed appears in two runs")
    return AblationResult(config, sorted(seeds, key=lambda seed: seed.seed)), headers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", default="", help="a line under the figure's title (e.g. the machine's load)")
    args = parser.parse_args()
    result, headers = merge(args.folders)
    args.out.mkdir(parents=True, exist_ok=True)
    table = ablation_report(result)
    (args.out / "table.md").write_text("\n".join(headers) + f"\n\n{table}\n", encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps({"headers": headers, **result.to_dict()}, indent=1))
    draw_ablation(result, args.out / "gains.png", subtitle=", ".join(filter(None, [cpu_name(), args.note])))
    print(table)


if __name__ == "__main__":
    main()
