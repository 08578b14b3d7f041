# Sourced by run_tests.sh and run_demo.sh: create .venv and install dosna with what it needs.
# Reinstalls only when pyproject.toml changed. DOSNA_VENV and DOSNA_PYTHON override the defaults.
dosna_venv_setup() {
    local top extras py stamp want
    top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    extras=${1:-dev,bench}
    VENV=${DOSNA_VENV:-$top/.venv}
    py=${DOSNA_PYTHON:-$(command -v python3.11 || command -v python3)}
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== creating $VENV with $("$py" --version)"
        "$py" -m venv "$VENV"
    fi
    stamp="$VENV/.dosna-installed"
    want="$(sha256sum "$top/pyproject.toml" | cut -c1-16) $extras"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "== installing dosna[$extras] into $VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$top[$extras]"
        echo "$want" > "$stamp"
    fi
    PY="$VENV/bin/python"
    export PATH="$VENV/bin:$PATH"
}

# For MPI ranks other than 0: wait (up to 20 minutes) until rank 0 has set up the venv.
dosna_venv_wait() {
    local top want waited=0
    top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    VENV=${DOSNA_VENV:-$top/.venv}
    want="$(sha256sum "$top/pyproject.toml" | cut -c1-16) ${1:-dev,bench}"
    until [ "$(cat "$VENV/.dosna-installed" 2>/dev/null)" = "$want" ]; do
        if [ "$waited" -ge 1200 ]; then
            echo "run_tests.sh: gave up waiting for rank 0 to set up $VENV" >&2
            return 1
        fi
        sleep 2; waited=$((waited + 2))
    done
    PY="$VENV/bin/python"
    export PATH="$VENV/bin:$PATH"
}
