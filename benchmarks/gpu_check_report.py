"""The one JSON and table of ``benchmarks/gpu_check.sh``: each stage's status, time and headline figures.

The shell script runs the stages (GPU-marked tests, embed, few-shot, serve and Ray throughput),
each writing its own JSON (or, for the tests, a JUnit XML) into the output folder and one line
``name<TAB>rc<TAB>seconds<TAB>command`` into ``stages.tsv`` (rc ``skip:<reason>`` for a stage
not run); this script reads them all back,
writes ``gpu_check.json`` (the stage outputs verbatim under ``stages[i].result``) and prints a
table. Exit status 1 when a stage failed, so the whole check is green or red in one call.

    python benchmarks/gpu_check_report.py OUT_DIR --device cuda --size full
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

#: The stages in the order the script runs them, and the file each one leaves in the output folder.
STAGE_FILES = {
    "tests": "tests.xml",
    "embed": "embed.json",
    "fewshot": "fewshot.json",
    "serve": "serve.json",
    "ray": "ray.json",
}
SCHEMA = "percep-rag/gpu-check/1"


def junit_counts(path: Path) -> dict[str, int]:
    """Test counts of a pytest ``--junitxml`` file: tests, passed, failed, errors, skipped."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    keys = ("tests", "failures", "errors", "skipped")
    counts = {key: sum(int(suite.get(key, 0)) for suite in suites) for key in keys}
    return {
        "tests": counts["tests"],
        "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        "failed": counts["failures"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
    }


def headline(name: str, result: Any) -> dict[str, Any]:
    """The few figures a stage is judged by (missing keys are left out, never invented)."""
    if result is None:
        return {}
    if name == "tests":
        return dict(result)
    if name == "embed":
        figures = {}
        for row in result.get("results", []):
            key = "embedder_long_tensors_img_s" if "embedder_long_tensors_img_s" in row else "embedder_tensors_img_s"
            jpeg = "long_jpeg_vs_tensors" if "long_jpeg_vs_tensors" in row else "jpeg_vs_tensors"
            cosine = "long_job_cosine_to_fp32" if "long_job_cosine_to_fp32" in row else "embedder_cosine_to_fp32"
            peak = row.get("near_peak_gflop_s", {}).get(key)  # the bf16 peak measured next to the path
            fraction = row[key] / row["bf16_limit_img_s"] if peak is None else row[key] * row["gflop_per_image"] / peak
            figures[row["backbone"]] = {
                "img_s": row[key],
                "of_bf16_limit": fraction,
                "per_batch_of_bf16_limit": row.get("long_job_per_batch_of_bf16_limit"),
                "jpeg_vs_tensors": row.get(jpeg),
                "alternating_jpeg_vs_tensors": row.get("long_job_alternating_jpeg_vs_tensors"),
                "cosine_to_fp32": row.get(cosine),
                "compile_s": row.get("long_job_compile_s"),
            }
        return figures
    if name == "fewshot":
        cached = [row for row in result.get("results", []) if row.get("path") == "cached"]
        return {
            "model": result.get("model"),
            "cached_queries_per_s": cached[0]["queries_per_s"] if cached else None,
            "speedup_vs_naive": result.get("speedup"),
        }
    if name == "serve":
        return {
            f"{row['mode']} x{row['clients']}": {
                "requests_per_s": row["requests_per_s"],
                "p99_ms": row["p99_ms"],
                "errors": row["errors"],
            }
            for row in result.get("rows", [])
        }
    if name == "ray":
        return {
            row["engine"]: {"img_s": row.get("img_s"), "img_s_per_actor": row.get("img_s_per_actor")}
            for row in result.get("results", [])
        }
    return {}


def read_stages(out: Path) -> list[dict[str, Any]]:
    """The stages ``stages.tsv`` lists, each with its status and its output read back."""
    stages = []
    for line in (out / "stages.tsv").read_text().splitlines():
        if not line.strip():
            continue
        name, rc, seconds, command = line.split("\t", 3)
        file = out / STAGE_FILES.get(name, f"{name}.json")
        result: Any = None
        skipped = rc.startswith("skip")
        if skipped:
            status = "skipped"
        elif not file.exists():
            status = "failed" if rc != "0" else "no output"
        else:
            result = junit_counts(file) if file.suffix == ".xml" else json.loads(file.read_text())
            failed_tests = name == "tests" and (result["failed"] or result["errors"])
            status = "ok" if rc == "0" and not failed_tests else "failed"
        stages.append(
            {
                "name": name,
                "status": status,
                "rc": None if skipped else int(rc),
                "skip_reason": rc.partition(":")[2] if skipped else None,
                "seconds": float(seconds),
                "command": command,
                "log": f"{name}.log",
                "headline": headline(name, result),
                "result": result,
            }
        )
    return stages


def build_report(out: Path, device: str, size: str) -> dict[str, Any]:
    """The whole check as one JSON-ready dict (see :data:`SCHEMA`)."""
    stages = read_stages(out)
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device,
        "size": size,
        "host": platform.node(),
        "python": platform.python_version(),
        # green: nothing failed and something ran (a dry run plans, it is neither green nor red)
        "green": all(stage["status"] in ("ok", "skipped") for stage in stages) and any(
            stage["status"] == "ok" for stage in stages
        ),
        "dry_run": bool(stages) and all(stage["skip_reason"] == "dry run" for stage in stages),
        "stages": stages,
    }


def _figures(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_figures(item)}" for key, item in value.items() if item is not None)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def table(report: dict[str, Any]) -> str:
    """A markdown table of the stages: status, seconds and headline figures."""
    lines = ["| stage | status | s | figures |", "|---|---|---|---|"]
    for stage in report["stages"]:
        figures = _figures(stage["headline"]) or (stage["skip_reason"] or "")
        lines.append(f"| {stage['name']} | {stage['status']} | {stage['seconds']:.0f} | {figures} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the folder gpu_check.sh wrote into")
    parser.add_argument("--device", required=True)
    parser.add_argument("--size", required=True)
    args = parser.parse_args(argv)
    report = build_report(args.out, args.device, args.size)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    verdict = "DRY RUN" if report["dry_run"] else "GREEN" if report["green"] else "RED"
    print(f"# gpu_check ({report['date']}, device {args.device}, size {args.size}): {verdict}")
    print(table(report))
    print(f"\nwritten: {args.out / 'gpu_check.json'}")
    return 0 if report["green"] or report["dry_run"] else 1


if __name__ == "__main__":
    sys.exit(main())
