#!/usr/bin/env bash
# The one script a GPU issue runs: GPU-marked tests, then embed, few-shot, serve and Ray throughput,
# each a stage with its own JSON (+ log); one gpu_check.json and a table at the end.
#
#   bash benchmarks/gpu_check.sh --device cpu                  # the CPU rehearsal (small sizes, minutes)
#   bash benchmarks/gpu_check.sh --device cuda --wheels .whl   # on a lent GPU machine, from the repo root
#
# Options (sizes default by --size: small on cpu, full on cuda; each can be overridden):
#   --device cpu|cuda        required
#   --size small|full
#   --out DIR                where the JSONs and logs go (default: $OUT when set, else benchmarks/results/gpu_check-DEVICE)
#   --python PY              the interpreter (default: $PYTHON, else .venv/bin/python, else python3)
#   --wheels DIR             pip-install DIR/*.whl first (offline, --no-deps, into /tmp/percep-rag-site)
#   --stages "a b ..."       a subset of: tests embed fewshot serve ray (default all, in this order)
#   --backbones "a b"        embed stage backbones     --embed-images N     images (JPEG files and tensors)
#   --batch-size N           embed and Ray batch size  --fewshot-queries N  timed few-shot queries per path
#   --serve-points N         serve collection size     --serve-seconds S    load per client count
#   --ray-images N           Ray indexing images       --stage-timeout S    per stage (default 900)
#   --dry-run                record every stage as skipped with its command (checks the plumbing only)
#
# Exit status 0 when every stage ran green (or was skipped with a reason), 1 otherwise.
# On the device machine (see /work/.library/device/README.md): Python 3.12 with torch preinstalled,
# no internet: carry the missing wheels (`--wheels .whl`, named in `carry`) and write under $OUT
# (at most 8 files come back: gpu_check.json, the table in the output, the logs of failed stages).
set -uo pipefail

device="" size="" out="${OUT:-}" python_bin="${PYTHON:-}" wheels="" stages="tests embed fewshot serve ray"
backbones="" embed_images="" batch_size="" fewshot_queries="" serve_points="" serve_seconds="" ray_images=""
stage_timeout=900 dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --python) python_bin="$2"; shift 2 ;;
    --wheels) wheels="$2"; shift 2 ;;
    --stages) stages="$2"; shift 2 ;;
    --backbones) backbones="$2"; shift 2 ;;
    --embed-images) embed_images="$2"; shift 2 ;;
    --batch-size) batch_size="$2"; shift 2 ;;
    --fewshot-queries) fewshot_queries="$2"; shift 2 ;;
    --serve-points) serve_points="$2"; shift 2 ;;
    --serve-seconds) serve_seconds="$2"; shift 2 ;;
    --ray-images) ray_images="$2"; shift 2 ;;
    --stage-timeout) stage_timeout="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$device" in cpu|cuda) ;; *) echo "gpu_check.sh: --device cpu|cuda is required" >&2; exit 2 ;; esac
[[ -z "$size" ]] && { [[ "$device" == cuda ]] && size=full || size=small; }
case "$size" in small|full) ;; *) echo "gpu_check.sh: --size small|full, not $size" >&2; exit 2 ;; esac
for stage in $stages; do
  case "$stage" in tests|embed|fewshot|serve|ray) ;; *) echo "gpu_check.sh: unknown stage $stage" >&2; exit 2 ;; esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 2
if [[ -z "$python_bin" ]]; then
  if [[ -x .venv/bin/python ]]; then python_bin=.venv/bin/python; else python_bin=python3; fi
fi
out="${out:-benchmarks/results/gpu_check-$device}"
mkdir -p "$out"
: >"$out/stages.tsv"
export PYTHONPATH="$root:$root/integrations${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [[ -n "$wheels" && $dry_run -eq 0 ]]; then
  "$python_bin" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/percep-rag-site "$wheels"/*.whl || { echo "gpu_check.sh: installing $wheels failed" >&2; exit 1; }
  export PYTHONPATH="$PYTHONPATH:/tmp/percep-rag-site"
fi

# Sizes: small = a CPU rehearsal of minutes on tiny models; full = what a lent GPU measures.
if [[ "$size" == small ]]; then
  : "${backbones:=tiny-vit-random}" "${embed_images:=8}" "${batch_size:=4}" "${fewshot_queries:=3}"
  : "${serve_points:=2000}" "${serve_seconds:=2}" "${ray_images:=16}"
  embed_extra=(--repeats 1 --matmul-size 256 --jpeg-size 96 72) fewshot_extra=(--tiny --warmup 1)
  serve_clients=(1 2) ray_backbone=tiny-vit-random
else
  : "${backbones:=clip-vit-b-16 dreamsim-ensemble}" "${embed_images:=1024}" "${batch_size:=128}"
  : "${fewshot_queries:=20}" "${serve_points:=50000}" "${serve_seconds:=10}" "${ray_images:=4096}"
  embed_extra=(--repeats 2) fewshot_extra=() serve_clients=(1 4 16) ray_backbone=clip-vit-b-16
fi
gpus_per_actor=0; [[ "$device" == cuda ]] && gpus_per_actor=1
read -r -a backbone_list <<<"$backbones"

# name, python modules it needs, then its command
run_stage() {
  local name="$1" needs="$2"; shift 2
  local command="$*" started rc missing
  if [[ $dry_run -eq 1 ]]; then
    printf '%s\tskip:dry run\t0\t%s\n' "$name" "$command" >>"$out/stages.tsv"; return
  fi
  missing=$("$python_bin" -c "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))" $needs)
  if [[ -n "$missing" ]]; then
    echo "== $name: skipped, not importable: $missing" >&2
    printf '%s\tskip:not importable: %s\t0\t%s\n' "$name" "$missing" "$command" >>"$out/stages.tsv"; return
  fi
  echo "== $name: $command" >&2
  started=$EPOCHREALTIME
  timeout "$stage_timeout" "$@" >"$out/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $started }")" \
    "$command" >>"$out/stages.tsv"
  [[ $rc -ne 0 ]] && { echo "== $name failed (rc $rc), last lines of $out/$name.log:" >&2; tail -n 15 "$out/$name.log" >&2; }
}

core="torch percep_rag open_clip"
for stage in $stages; do
  case "$stage" in
    tests) run_stage tests "$core pytest" "$python_bin" -m pytest -m gpu tests -q -p no:cacheprovider \
             --junitxml="$out/tests.xml" ;;
    embed) run_stage embed "$core" "$python_bin" benchmarks/embed_throughput.py --device "$device" \
             --backbones "${backbone_list[@]}" --images "$embed_images" --tensor-images "$embed_images" \
             --batch-size "$batch_size" "${embed_extra[@]}" --json "$out/embed.json" ;;
    fewshot) run_stage fewshot "$core open_flamingo transformers" "$python_bin" benchmarks/fewshot_throughput.py \
             --device "$device" --queries "$fewshot_queries" "${fewshot_extra[@]}" --json "$out/fewshot.json" ;;
    serve) run_stage serve "$core fastapi uvicorn qdrant_edge" "$python_bin" benchmarks/serve_throughput.py \
             --points "$serve_points" --clients "${serve_clients[@]}" --seconds "$serve_seconds" \
             --json "$out/serve.json" ;;
    ray) run_stage ray "$core ray qdrant_edge" "$python_bin" benchmarks/ray_index.py --backbone "$ray_backbone" \
             --images "$ray_images" --actors 1 --gpus-per-actor "$gpus_per_actor" --batch-size "$batch_size" \
             --json "$out/ray.json" ;;
  esac
done
"$python_bin" benchmarks/gpu_check_report.py "$out" --device "$device" --size "$size"
