#!/usr/bin/env bash
# Run dosna's tests. Sets up .venv and installs everything the tests need first.
#
#   ./run_tests.sh              everything: lint, type check, all tests on every backend x engine
#                               (ceph and s3 against a throw-away Ceph cluster on 127.0.0.1,
#                               in parallel with the rest), the docs' examples, docs build,
#                               benchmark smoke runs
#   ./run_tests.sh --quick      the same with 100 hypothesis cases per property, no docs build
#                               and no benchmarks
#   ./run_tests.sh --no-ceph    no Ceph cluster: the ceph and s3 tests are skipped
#   ./run_tests.sh --backend hdf5 --engine cpu [--connection DIR] [--connection-options k=v,...]
#                               the conformance suite for one combination
#   ./run_tests.sh -- -k oracle -x
#                               extra arguments after -- go to pytest
#   mpiexec -n 4 sh run_tests.sh --backend hdf5 --engine mpi --connection DIR
#                               the conformance suite on 4 MPI ranks
#
# The Ceph cluster (scripts/ceph-dev.sh) needs Debian's Ceph packages; as root they are
# installed with apt-get when missing. Without root or apt-get, or with --no-ceph, the ceph
# and s3 tests are skipped and say why; everything else runs as any user.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"   # also when started as `sh run_tests.sh`
set -euo pipefail
cd "$(dirname "$0")"
MPI_RANK=${PMI_RANK:-${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-}}}   # set when started by mpiexec

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    cat <<'HELP'

Options:
  --backend NAME               ram, hdf5, ceph, s3 (conformance suite only, for this backend)
  --engine NAME                cpu, joblib, mpi (conformance suite only, with this engine)
  --connection NAME            hdf5: an existing directory; other backends: pool/bucket/name
  --connection-options K=V,..  backend options, e.g. fsync=true
  --engine-options K=V,..      engine options
  --examples N                 hypothesis cases per property test (default 1000)
  --quick                      fewer hypothesis cases (100), no docs or benchmark
  --no-ceph                    do not start the Ceph cluster (ceph and s3 tests are skipped)
  -h, --help                   this help

The NumPy-oracle property tests run all their cases on ram x cpu (or on the one
combination selected) and a tenth of them, with more chunks each, on the others.

Environment: DOSNA_VENV (default .venv), DOSNA_PYTHON (default python3.11 or python3),
DOSNA_CEPH_CONF (use that cluster instead of starting one; see scripts/ceph-dev.sh env).
HELP
}

BACKEND="" ENGINE="" CONNECTION="" CONN_OPTS="" ENGINE_OPTS="" QUICK=0 EXAMPLES=1000 CEPH=1
PYTEST_EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) BACKEND=$2; shift 2 ;;
        --engine) ENGINE=$2; shift 2 ;;
        --connection) CONNECTION=$2; shift 2 ;;
        --connection-options) CONN_OPTS=$2; shift 2 ;;
        --engine-options) ENGINE_OPTS=$2; shift 2 ;;
        --examples) EXAMPLES=$2; shift 2 ;;
        --quick) QUICK=1; EXAMPLES=100; shift ;;
        --no-ceph) CEPH=0; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; PYTEST_EXTRA=("$@"); break ;;
        *) echo "run_tests.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

SELECT_ARGS=()
[ -n "$BACKEND" ] && SELECT_ARGS+=(--dosna-backend "$BACKEND")
[ -n "$ENGINE" ] && SELECT_ARGS+=(--dosna-engine "$ENGINE")
[ -n "$CONNECTION" ] && SELECT_ARGS+=(--dosna-connection "$CONNECTION")
[ -n "$CONN_OPTS" ] && SELECT_ARGS+=(--dosna-connection-options "$CONN_OPTS")
[ -n "$ENGINE_OPTS" ] && SELECT_ARGS+=(--dosna-engine-options "$ENGINE_OPTS")

# -- phases: each is announced, timed and listed at the end ------------------------------
PHASE="" PHASE_START=$SECONDS SUMMARY=""
phase() {
    phase_done
    PHASE=$1 PHASE_START=$SECONDS
    echo "== [$(date +%H:%M:%S)] $1"
}
phase_done() {
    [ -n "$PHASE" ] && SUMMARY+=$(printf '%6d s  %s' $((SECONDS - PHASE_START)) "$PHASE")$'\n'
    PHASE=""
}

WORK="" CEPH_OURS=0 CEPH_STARTER="" OBJECT_PID=""
cleanup() {   # on any exit, also when tests fail
    local rc=$?
    [ -n "$OBJECT_PID" ] && kill "$OBJECT_PID" 2>/dev/null && wait "$OBJECT_PID" 2>/dev/null
    [ -n "$CEPH_STARTER" ] && wait "$CEPH_STARTER" 2>/dev/null   # then stop what it started
    if [ "$CEPH_OURS" = 1 ]; then
        scripts/ceph-dev.sh stop >/dev/null 2>&1 || echo "note: scripts/ceph-dev.sh stop failed" >&2
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    if [ -n "$SUMMARY$PHASE" ]; then
        [ -n "$PHASE" ] && { [ "$rc" = 0 ] || PHASE="$PHASE (FAILED)"; phase_done; }
        echo "== time per phase"
        printf '%s' "$SUMMARY"
        printf '%6d s  in all\n' "$SECONDS"
    fi
}
if [ -z "$MPI_RANK" ]; then   # (ranks of an mpiexec job exec pytest below and keep nothing)
    trap cleanup EXIT
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/dosna-tests-XXXXXX")   # private (0700): logs, docs build
fi

# The full run starts a throw-away Ceph cluster (RADOS + S3 via radosgw) on 127.0.0.1 for
# the ceph and s3 backends, in the background while the environment is set up.
if [ -z "$MPI_RANK" ] && [ ${#SELECT_ARGS[@]} -eq 0 ] && [ -z "${DOSNA_CEPH_CONF:-}" ] && [ "$CEPH" = 1 ]; then
    scripts/ceph-dev.sh status >/dev/null 2>&1 || CEPH_OURS=1
    scripts/ceph-dev.sh start > "$WORK/ceph-start.log" 2>&1 &
    CEPH_STARTER=$!
fi

if [ -z "$MPI_RANK" ]; then phase "environment (.venv)"; fi
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
if [ -n "$MPI_RANK" ] && [ "$MPI_RANK" != 0 ]; then
    dosna_venv_wait dev,bench   # rank 0 installs; the others wait for it
else
    dosna_venv_setup dev,bench
fi
export DOSNA_HYPOTHESIS_EXAMPLES=$EXAMPLES
if [ -z "$MPI_RANK" ] && ! "$PY" -c "import torch" 2>/dev/null; then
    # The torch learner's tests run when a CPU build of PyTorch lies in one of pip's
    # find-links directories (never fetch the multi-GB CUDA build); otherwise they are skipped.
    torch_wheel=""
    for dir in ${PIP_FIND_LINKS:-} $("$PY" -m pip config get global.find-links 2>/dev/null || true); do
        for wheel in "$dir"/torch-*+cpu-cp3*.whl; do [ -f "$wheel" ] && torch_wheel=$wheel; done
    done
    if [ -n "$torch_wheel" ] && "$PY" -m pip install -q --disable-pip-version-check "$torch_wheel" >/dev/null 2>&1; then
        echo "installed PyTorch from $torch_wheel"
    else
        echo "note: no local CPU build of PyTorch; the torch learner tests will be skipped"
    fi
fi

if [ -n "$MPI_RANK" ]; then
    # One pytest per rank; -x and `python -m mpi4py` make a failure end the whole job.
    [ -n "$ENGINE" ] || SELECT_ARGS+=(--dosna-engine mpi)
    [ -n "$BACKEND" ] || SELECT_ARGS+=(--dosna-backend hdf5)
    exec "$PY" -m mpi4py -m pytest -p no:cacheprovider -x -q tests/test_conformance.py \
        "${SELECT_ARGS[@]}" "${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"}"
fi

if [ ${#SELECT_ARGS[@]} -gt 0 ]; then
    phase "conformance suite: ${SELECT_ARGS[*]}"
    "$PY" -m pytest -p no:cacheprovider tests/test_conformance.py "${SELECT_ARGS[@]}" \
        "${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"}"
    exit 0
fi

phase "lint (ruff)"
"$PY" -m ruff check dosna tests benchmarks examples
phase "type check (mypy)"
"$PY" -m mypy dosna

if [ -n "$CEPH_STARTER" ]; then
    phase "Ceph cluster (scripts/ceph-dev.sh start)"
    set +e
    wait "$CEPH_STARTER"
    rc=$?
    set -e
    CEPH_STARTER=""
    if [ "$rc" = 0 ]; then
        eval "$(scripts/ceph-dev.sh env)"   # the S3 key stays in this process's environment
        dosna_link_rados
        scripts/ceph-dev.sh status | head -n 1 || true   # (head ends the pipe early)
    elif [ "$rc" = 3 ]; then
        CEPH_OURS=0
        echo "ceph and s3 tests will be SKIPPED: $(tail -n 1 "$WORK/ceph-start.log")"
    else
        cat "$WORK/ceph-start.log" >&2
        echo "run_tests.sh: the Ceph cluster did not start (see above)" >&2
        exit 1
    fi
elif [ "$CEPH" = 0 ]; then
    echo "--no-ceph: ceph and s3 tests will be SKIPPED"
fi

PYTEST=("$PY" -m pytest -p no:cacheprovider --timeout=900 --timeout-method=thread --durations=15)
# The object-store tests wait on the cluster most of the time: they run beside the others
# (in the background, output shown when they end). They run one at a time among themselves,
# as some freeze a daemon on purpose.
if [ -n "${DOSNA_CEPH_CONF:-}" ]; then
    "${PYTEST[@]}" -m "ceph or s3" "${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"}" > "$WORK/objects.log" 2>&1 &
    OBJECT_PID=$!
    echo "== [$(date +%H:%M:%S)] object-store tests (ceph, s3) started in the background"
fi

phase "tests (all but ceph and s3; hypothesis: $EXAMPLES cases per property on the reference combination)"
set +e
"${PYTEST[@]}" -m "not ceph and not s3" "${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"}"
main_rc=$?
set -e
phase_done

if [ -n "$OBJECT_PID" ]; then
    echo "== [$(date +%H:%M:%S)] waiting for the object-store tests (ceph, s3)"
    set +e
    wait "$OBJECT_PID"
    object_rc=$?
    set -e
    OBJECT_PID=""
    echo "== object-store tests (ceph, s3), ran beside the others:"
    cat "$WORK/objects.log"
    object_seconds=$(grep -Eo ' in [0-9.]+s' "$WORK/objects.log" | tail -n 1 | tr -dc '0-9.' || true)
    SUMMARY+=$(printf '%6.0f s  %s' "${object_seconds:-0}" "object-store tests (ceph, s3), beside the others")$'\n'
    if [ "$object_rc" != 0 ]; then echo "run_tests.sh: object-store tests FAILED" >&2; exit 1; fi
fi
if [ "$main_rc" != 0 ]; then echo "run_tests.sh: tests FAILED" >&2; exit 1; fi

if [ "$QUICK" = 0 ]; then
    phase "docs (mkdocs build --strict)"
    "$PY" -m mkdocs build --strict --quiet --site-dir "$WORK/site"
    echo "docs built: $(find "$WORK/site" -name '*.html' | wc -l) pages"

    # Smoke runs: they check that the benchmarks run; figures at these sizes, on a busy
    # machine, are no measurement. Where a benchmark has a target, the verdict is printed.
    phase "benchmark smoke run (benchmarks/compare.py --quick)"
    "$PY" benchmarks/compare.py --quick --json "$WORK/compare.json" --plot "$WORK/compare.png" > "$WORK/compare.txt"
    "$PY" scripts/bench_verdict.py compare "$WORK/compare.json"
    phase "benchmark smoke run (benchmarks/engines.py --quick)"
    "$PY" benchmarks/engines.py --quick --json "$WORK/engines.json" > "$WORK/engines.txt"
    "$PY" scripts/bench_verdict.py engines "$WORK/engines.json"
    phase "benchmark smoke run (benchmarks/loader.py --quick)"
    "$PY" benchmarks/loader.py --quick --json "$WORK/loader.json" > "$WORK/loader.txt"
    "$PY" scripts/bench_verdict.py loader "$WORK/loader.json"
fi
phase_done
echo "== all done"
