#!/usr/bin/env bash
# The GPU check: run whenever a machine with a CUDA GPU is at hand (one GPU is enough), e.g.
#   make gpu-check        or        tools/gpu_check.sh [OUT_DIR]
# 1. `hpcgan info` on 2 ranks (the rank -> GPU map, how each backend moves CUDA tensors);
# 2. the tests that need CUDA: tests/unit/test_compress_cuda.py (compressor bits on the GPU = the
#    CPU kernels'), the real-GPU timer test, and the collectives on CUDA tensors at 2 ranks
#    (tests/mpi/test_comm_staging_mpi.py, mpi and torch backends);
# 3. a 2-rank run of every algorithm on cuda:0 (both ranks share the GPU: CUDA_VISIBLE_DEVICES=
#    GPU_CHECK_DEVICE, default 0) with the mpi backend, host-staged (--cuda-aware-mpi no), and of the
#    algorithms that use the communicator (sync, dqgan, cwgan) with the torch backend (gloo, since
#    NCCL needs one GPU per rank); each file must validate and say that every rank ran on cuda:0.
# Everything runs under `timeout`, in under 8 minutes in all (BUDGET seconds, default 450).
# Prints a summary. Exit status: 0 all passed, 1 something failed, 77 no CUDA device (nothing run:
# not a pass).
# Env: PYTHON (.venv/bin/python), MPIEXEC (.venv/bin/mpiexec, else mpiexec on PATH), BUDGET, GPU_CHECK_DEVICE.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
mpiexec="${MPIEXEC:-$root/.venv/bin/mpiexec}"
[[ -x "$mpiexec" ]] || mpiexec="$(command -v mpiexec || echo mpiexec)"
out="${1:-$root/results/gpu_check}"
budget="${BUDGET:-450}"
NO_CUDA=77

if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() and torch.cuda.device_count() > 0 else 1)'; then
    echo "gpu_check: no CUDA device: nothing run (exit $NO_CUDA; this is not a pass)"
    exit "$NO_CUDA"
fi
export CUDA_VISIBLE_DEVICES="${GPU_CHECK_DEVICE:-0}" PYTHONUNBUFFERED=1
mkdir -p "$out"
rm -f "$out"/*.h5
cd "$root" || exit 1
t_start=$SECONDS
names=() results=() times=()

# step NAME LIMIT CMD...: run CMD under `timeout` (never past the budget), its output in OUT/NAME.log
step() {
    local name="$1" limit="$2"; shift 2
    local left=$(( budget - (SECONDS - t_start) )) t0=$SECONDS rc
    (( limit > left )) && limit=$left
    names+=("$name")
    if (( limit < 10 )); then
        results+=("FAIL (out of time)") times+=(0)
        echo "== $name: FAIL (out of time)"
        return
    fi
    printf '== %-24s ' "$name"
    timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
    rc=$?
    times+=($(( SECONDS - t0 )))
    if (( rc == 0 )); then
        results+=("ok"); echo "ok ($(( SECONDS - t0 )) s)"
    else
        local why="exit $rc"; (( rc == 124 )) && why="timed out after $limit s"
        results+=("FAIL ($why; $out/$name.log)")
        echo "FAIL (exit $rc, $(( SECONDS - t0 )) s); last lines of $out/$name.log:"
        tail -n 15 "$out/$name.log" | sed 's/^/   | /'
    fi
}

# The results file of a run: valid, finished, and every rank on cuda:0.
read -r -d '' check_file <<'PY'
import json, sys
import h5py
from hpcgan.results.schema import validate
path = sys.argv[1]
problems = validate(path)
assert not problems, problems
with h5py.File(path) as f:
    assert "finished_at" in f.attrs, f"the run stopped: {f.attrs.get('stopped_reason')}"
    ranks = [(r["rank"], r["device"], r["device_name"]) for r in json.loads(f.attrs["ranks_json"])]
assert len(ranks) == 2 and all(device == "cuda:0" for _, device, _ in ranks), ranks
print(path, "OK; ranks on", ranks)
PY

# run NAME TRAIN-FLAGS...: a 2-rank training run, then its file check
run() {
    local name="$1"; shift
    step "$name" 150 "$mpiexec" -n 2 "$python" -m mpi4py -m hpcgan train --out "$out/$name.h5" --force \
        --device cuda --log-every 10 "$@"
    step "$name.file" 30 "$python" -c "$check_file" "$out/$name.h5"
}

mpitest=("$mpiexec" -n 2 "$python" -m pytest -q -rs --with-mpi --timeout=120 --timeout-method=thread)
step info 60 "$mpiexec" -n 2 "$python" -m mpi4py -m hpcgan info
step preflight 60 "$mpiexec" -n 2 "$python" -m mpi4py -m hpcgan preflight --device cuda --allow-shared-gpu
step unit-cuda-tests 120 "$python" -m pytest -q -rs tests/unit/test_compress_cuda.py tests/unit/test_timer.py
step comm-cuda-tests-mpi 150 "${mpitest[@]}" tests/mpi/test_comm_staging_mpi.py
step comm-cuda-tests-torch 150 env HPCGAN_TEST_BACKEND=torch "${mpitest[@]}" tests/mpi/test_comm_staging_mpi.py

img=(--data digits --model dcgan32 --width 16 --batch-size 32)
for algo in sync dqgan dposg cwgan; do
    run "${algo}_mpi" --algo "$algo" --backend mpi --cuda-aware-mpi no "${img[@]}" --steps 30
done
run pcwgan_mpi --algo pcwgan --backend mpi --cuda-aware-mpi no "${img[@]}" --steps 10
run sync_mog8_mpi --algo sync --backend mpi --cuda-aware-mpi no --data mog8 --steps 100 --eval-samples 1000
for algo in sync dqgan cwgan; do
    run "${algo}_torch" --algo "$algo" --backend torch "${img[@]}" --steps 30
done
# gradient buckets exchanged while backward runs (hooks on the CUDA autograd thread, the transport thread)
for algo in sync dqgan; do
    run "${algo}_buckets_mpi" --algo "$algo" --backend mpi --cuda-aware-mpi no "${img[@]}" --steps 30 --bucket-mb 0.05
    run "${algo}_buckets_torch" --algo "$algo" --backend torch "${img[@]}" --steps 30 --bucket-mb 0.05
done

echo
echo "gpu_check summary ($(( SECONDS - t_start )) s of a $budget s budget; logs and files in $out):"
failed=0
for i in "${!names[@]}"; do
    printf '  %-24s %4s s  %s\n' "${names[$i]}" "${times[$i]}" "${results[$i]}"
    [[ "${results[$i]}" == ok ]] || failed=$(( failed + 1 ))
done
if (( failed )); then
    echo "gpu_check: $failed of ${#names[@]} checks FAILED"
    exit 1
fi
echo "gpu_check: all ${#names[@]} checks passed"
