#!/usr/bin/env bash
# Run dosna's tests. Sets up .venv and installs everything the tests need first.
#
#   mpiexec -n 4 sh run_tests.sh --backend hdf5 --engine mpi --connection DIR
#                                        the conformance suite on 4 MPI ranks
#
#   ./run_tests.sh                       everything: lint, all tests on every backend x engine,
#                                        docs build, benchmark smoke run
#   ./run_tests.sh --backend hdf5 --engine cpu [--connection DIR] [--connection-options k=v,...]
#                                        the conformance suite for one combination
#   ./run_tests.sh -- -k oracle -x       extra arguments after -- go to pytest
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"   # also when started as `sh run_tests.sh`
set -euo pipefail
cd "$(dirname "$0")"
MPI_RANK=${PMI_RANK:-${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-}}}   # set when started by mpiexec

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'HELP'

Options:
  --backend NAME               ram, hdf5, ceph, s3 (conformance suite only, for this backend)
  --engine NAME                cpu, joblib, mpi (conformance suite only, with this engine)
  --connection NAME            hdf5: an existing directory; other backends: pool/bucket/name
  --connection-options K=V,..  backend options, e.g. fsync=true
  --engine-options K=V,..      engine options
  --examples N                 hypothesis cases per property test (default 1000)
  --quick                      fewer hypothesis cases (100), no docs or benchmark
  -h, --help                   this help

Environment: DOSNA_VENV (default .venv), DOSNA_PYTHON (default python3.11 or python3).
HELP
}

BACKEND="" ENGINE="" CONNECTION="" CONN_OPTS="" ENGINE_OPTS="" QUICK=0 EXAMPLES=1000
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
        -h|--help) usage; exit 0 ;;
        --) shift; PYTEST_EXTRA=("$@"); break ;;
        *) echo "run_tests.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

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
        echo "== installed PyTorch from $torch_wheel"
    else
        echo "note: no local CPU build of PyTorch; the torch learner tests will be skipped"
    fi
fi

SELECT=()
[ -n "$BACKEND" ] && SELECT+=(--dosna-backend "$BACKEND")
[ -n "$ENGINE" ] && SELECT+=(--dosna-engine "$ENGINE")
[ -n "$CONNECTION" ] && SELECT+=(--dosna-connection "$CONNECTION")
[ -n "$CONN_OPTS" ] && SELECT+=(--dosna-connection-options "$CONN_OPTS")
[ -n "$ENGINE_OPTS" ] && SELECT+=(--dosna-engine-options "$ENGINE_OPTS")

if [ -n "$MPI_RANK" ]; then
    # One pytest per rank; -x and `python -m mpi4py` make a failure end the whole job.
    [ -n "$ENGINE" ] || SELECT+=(--dosna-engine mpi)
    [ -n "$BACKEND" ] || SELECT+=(--dosna-backend hdf5)
    exec "$PY" -m mpi4py -m pytest -p no:cacheprovider -x -q tests/test_conformance.py \
        "${SELECT[@]}" "${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"}"
fi

if [ ${#SELECT[@]} -gt 0 ]; then
    echo "== conformance suite: ${SELECT[*]}"
    exec "$PY" -m pytest -p no:cacheprovider tests/test_conformance.py "${SELECT[@]}" \
        "${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"}"
fi

echo "== lint (ruff)"
"$PY" -m ruff check dosna tests benchmarks examples
echo "== type check (mypy)"
"$PY" -m mypy dosna

# A throw-away Ceph cluster (RADOS + S3 via radosgw) on 127.0.0.1 for the ceph and s3 backends.
CEPH_OURS=0
site=""
cleanup() {   # on any exit, also when tests fail
    if [ "$CEPH_OURS" = 1 ]; then scripts/ceph-dev.sh stop || true; fi
    if [ -n "$site" ]; then rm -rf "$site"; fi
}
trap cleanup EXIT
if [ -z "${DOSNA_CEPH_CONF:-}" ]; then
    echo "== starting a throw-away Ceph cluster (scripts/ceph-dev.sh start)"
    scripts/ceph-dev.sh status >/dev/null 2>&1 || CEPH_OURS=1
    set +e
    scripts/ceph-dev.sh start > /tmp/dosna-ceph-start.log 2>&1
    rc=$?
    set -e
    if [ "$rc" = 0 ]; then
        eval "$(scripts/ceph-dev.sh env)"
        . scripts/venv.sh && dosna_link_rados
    elif [ "$rc" = 3 ]; then
        CEPH_OURS=0
        echo "ceph and s3 tests will be SKIPPED: $(tail -n 1 /tmp/dosna-ceph-start.log)"
    else
        cat /tmp/dosna-ceph-start.log >&2
        echo "run_tests.sh: the Ceph cluster did not start (see above)" >&2
        exit 1
    fi
fi

echo "== tests (hypothesis: $EXAMPLES cases per property)"
"$PY" -m pytest -p no:cacheprovider --timeout=900 --timeout-method=thread --durations=10 \
    -k "not ceph and not s3" "${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"}"

OBJECT_EXAMPLES=$(( EXAMPLES < 200 ? EXAMPLES : 200 ))
echo "== object-store tests: ceph and s3 (hypothesis: $OBJECT_EXAMPLES cases per property)"
DOSNA_HYPOTHESIS_EXAMPLES=$OBJECT_EXAMPLES "$PY" -m pytest -p no:cacheprovider --timeout=900 \
    --timeout-method=thread --durations=10 -k "ceph or s3" "${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"}"

if [ "$QUICK" = 0 ]; then
    echo "== docs (mkdocs build --strict)"
    site=$(mktemp -d)
    "$PY" -m mkdocs build --strict --quiet --site-dir "$site"
    echo "docs built: $(find "$site" -name '*.html' | wc -l) pages"

    echo "== benchmark smoke run (benchmarks/compare.py --quick)"
    "$PY" benchmarks/compare.py --quick --plot "$site/compare.png" > "$site/compare.txt"
    tail -n 4 "$site/compare.txt"
    echo "== benchmark smoke run (benchmarks/engines.py --quick)"
    "$PY" benchmarks/engines.py --quick | tail -n 3
    echo "== benchmark smoke run (benchmarks/loader.py --quick)"
    "$PY" benchmarks/loader.py --quick | tail -n 1
fi
echo "== all done"
