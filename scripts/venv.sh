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

# Make Debian's python3-rados binding (built for CPython 3.11) importable in the venv:
# a directory holding only a link to the extension, put on the path by a .pth file
# (adding all of dist-packages would shadow the venv's own packages).
dosna_link_rados() {
    local so=/usr/lib/python3/dist-packages/rados.cpython-311-x86_64-linux-gnu.so dir site
    [ -f "$so" ] || return 0
    "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
        echo "note: rados binding is for CPython 3.11; $VENV has another version" >&2; return 0; }
    dir="$VENV/rados-binding"
    mkdir -p "$dir"
    ln -sf "$so" "$dir/"
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
    echo "$dir" > "$site/dosna-rados.pth"
}
