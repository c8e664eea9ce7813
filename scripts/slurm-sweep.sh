#!/usr/bin/env bash
# memvisor sweep on a Slurm cluster: one job array over the grid's shards, then a merge job.
#
#   scripts/slurm-sweep.sh GRID.json OUT_DIR TASKS [sbatch options...]
#
# submits (no scheduler of our own: Slurm's job arrays do the spreading)
#   - an array of TASKS tasks; task i runs
#       memvisor sweep GRID --shard $((i+1))/TASKS --out OUT_DIR/shard-i --resume [--jobs $SLURM_CPUS_PER_TASK]
#     (--resume: a requeued task keeps the points it finished);
#   - a job that starts once every task succeeded (--dependency=afterok) and runs
#       memvisor sweep merge OUT_DIR/shard-* --out OUT_DIR
#     giving OUT_DIR/results.csv, results.jsonl and report.html, the same files one local run writes.
#
# Extra arguments go to both sbatch calls (--partition, --time, --cpus-per-task, --output ...).
# OUT_DIR must be on storage every node sees; so must this checkout and node (their paths are
# resolved here, at submission, and passed to the jobs).
#
# Under Slurm the same file is the job script: MEMVISOR_SWEEP_ROLE (shard | merge) says which part to run.
#SBATCH --job-name=memvisor-sweep
set -euo pipefail

if [[ -n "${SLURM_JOB_ID:-}" && -n "${MEMVISOR_SWEEP_ROLE:-}" ]]; then
  memvisor=("$MEMVISOR_NODE" "$MEMVISOR_JS")
  case "$MEMVISOR_SWEEP_ROLE" in
    shard)
      jobs=()
      [[ -n "${SLURM_CPUS_PER_TASK:-}" ]] && jobs=(--jobs "$SLURM_CPUS_PER_TASK")
      exec "${memvisor[@]}" sweep "$MEMVISOR_GRID" --shard "$((SLURM_ARRAY_TASK_ID + 1))/$SLURM_ARRAY_TASK_COUNT" \
        --out "$MEMVISOR_OUT/shard-$SLURM_ARRAY_TASK_ID" --resume "${jobs[@]}"
      ;;
    merge)
      exec "${memvisor[@]}" sweep merge "$MEMVISOR_OUT"/shard-* --out "$MEMVISOR_OUT"
      ;;
    *)
      echo "slurm-sweep.sh: unknown MEMVISOR_SWEEP_ROLE '$MEMVISOR_SWEEP_ROLE'" >&2
      exit 1
      ;;
  esac
fi

if [[ $# -lt 3 ]]; then
  echo "usage: scripts/slurm-sweep.sh GRID.json OUT_DIR TASKS [sbatch options...]" >&2
  exit 1
fi
grid=$(realpath "$1")
out=$(realpath -m "$2")
tasks=$3
shift 3
if ! [[ "$tasks" =~ ^[1-9][0-9]*$ ]]; then
  echo "slurm-sweep.sh: TASKS must be a positive integer, got '$tasks'" >&2
  exit 1
fi
[[ -r "$grid" ]] || { echo "slurm-sweep.sh: cannot read grid '$grid'" >&2; exit 1; }
command -v sbatch >/dev/null || { echo "slurm-sweep.sh: sbatch not found (is Slurm installed?)" >&2; exit 1; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
node_bin=$(command -v node)
memvisor_js=$(realpath "$here/../bin/memvisor.js")
mkdir -p "$out"
# Paths travel in the environment (--export), so they may hold spaces but not commas.
env_common="ALL,MEMVISOR_NODE=$node_bin,MEMVISOR_JS=$memvisor_js,MEMVISOR_GRID=$grid,MEMVISOR_OUT=$out"
script=$(realpath "${BASH_SOURCE[0]}")
array=$(sbatch --parsable --array="0-$((tasks - 1))" --export="$env_common,MEMVISOR_SWEEP_ROLE=shard" "$@" "$script")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes --export="$env_common,MEMVISOR_SWEEP_ROLE=merge" "$@" "$script")
merge=${merge%%;*}
echo "submitted array job $array ($tasks tasks) and merge job $merge; results: $out/results.csv"
