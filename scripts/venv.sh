# Sourced by run_tests.sh and run_demo.sh: create .venv and install dosna with what it needs.
# Both share one environment: extras are only ever added (the stamp file lists what is in),
# and pip runs again only when pyproject.toml changed or an extra is missing. pip's output
# goes to .venv/pip.log and is shown only when it fails. DOSNA_VENV and DOSNA_PYTHON
# override the defaults.

# _dosna_venv_has WANT: whether the stamp says every extra in WANT (a,b,c) is installed
# for this pyproject.toml.
_dosna_venv_has() {
    local stamp hash have extra
    stamp=$(cat "$VENV/.dosna-installed" 2>/dev/null) || return 1
    hash=$(sha256sum "$TOP/pyproject.toml" | cut -c1-16)
    [ "${stamp%% *}" = "$hash" ] || return 1
    have=",${stamp#* },"
    for extra in ${1//,/ }; do
        case "$have" in *",$extra,"*) ;; *) return 1 ;; esac
    done
}

dosna_venv_setup() {
    local extras py stamp all
    TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    extras=${1:-dev,bench}
    VENV=${DOSNA_VENV:-$TOP/.venv}
    py=${DOSNA_PYTHON:-$(command -v python3.11 || command -v python3)}
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== creating $VENV with $("$py" --version)"
        "$py" -m venv "$VENV"
    fi
    if ! _dosna_venv_has "$extras"; then
        stamp=$(cat "$VENV/.dosna-installed" 2>/dev/null || true)
        # keep what is there (run_demo.sh and run_tests.sh need different extras)
        if [ "${stamp%% *}" = "$(sha256sum "$TOP/pyproject.toml" | cut -c1-16)" ]; then
            all=$(echo "${stamp#* },$extras" | tr , '\n' | sort -u | paste -sd, -)
        else
            all=$(echo "$extras" | tr , '\n' | sort -u | paste -sd, -)
        fi
        echo "== installing dosna[$all] into $VENV (log: $VENV/pip.log)"
        if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
               "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$TOP[$all]"; } \
                > "$VENV/pip.log" 2>&1; then
            grep -v '^WARNING: Location ' "$VENV/pip.log" | tail -n 30 >&2
            echo "pip failed (the whole log: $VENV/pip.log)" >&2
            return 1
        fi
        echo "$(sha256sum "$TOP/pyproject.toml" | cut -c1-16) $all" > "$VENV/.dosna-installed"
    fi
    PY="$VENV/bin/python"
    export PATH="$VENV/bin:$PATH"
}

# For MPI ranks other than 0: wait (up to 20 minutes) until rank 0 has set up the venv.
dosna_venv_wait() {
    local waited=0
    TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    VENV=${DOSNA_VENV:-$TOP/.venv}
    until _dosna_venv_has "${1:-dev,bench}"; do
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
