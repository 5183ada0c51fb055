# A venv under $SEATLEDGER_BENCH_CACHE (default ~/.cache/seatledger-bench)
# with the given PyPI requirements; prints the not_installed JSON line and
# exits 0 when it cannot be made.
py_venv() {
    local name="$1"; shift
    local cache="${SEATLEDGER_BENCH_CACHE:-$HOME/.cache/seatledger-bench}"
    VENV="$cache/venv-$name"
    mkdir -p "$cache"
    if ! [ -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" >&2 || { echo '{"not_installed": "python3 -m venv failed"}'; exit 0; }
    fi
    "$VENV/bin/pip" install -q "$@" >&2 \
        || { echo "{\"not_installed\": \"pip install $* failed (no network to PyPI?)\"}"; exit 0; }
}
