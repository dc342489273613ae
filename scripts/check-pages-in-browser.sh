#!/usr/bin/env bash
# carelens's web pages in headless Chromium: `carelens serve` on the sample data with a
# throwaway ledger, and tests/browser/flows.mjs (playwright-core driving Debian's
# Chromium, axe-core on every page) signing in, explaining, releasing, downloading the
# CSV, the query library run as a batch, a researcher's request approved by an approver and released, the register,
# signing out.
#
#   scripts/check-pages-in-browser.sh                # check only
#   scripts/check-pages-in-browser.sh --update-docs  # also refresh docs/screenshots/*.png
#
# Needs Chromium (Debian: apt-get install chromium), Node.js and npm (the two npm
# packages are installed from tests/browser/package-lock.json; no browser is downloaded).
# `.ci/run` runs this after the tests. Set CHROMIUM to use another binary.
set -euo pipefail
cd "$(dirname "$0")/.."

export CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [ -z "$CHROMIUM" ] || ! command -v npm >/dev/null; then
    echo "error: needs Chromium and npm (apt-get install chromium nodejs npm)" >&2
    exit 2
fi
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/axe-core ]; then
    echo "== installing playwright-core and axe-core (npm ci)"
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

cargo build --quiet --locked
bin="${CARGO_TARGET_DIR:-target}/debug/carelens"

work="$(mktemp -d)"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

export CARELENS_CONFIG=sample-data/carelens.toml CARELENS_LEDGER="$work/ledger.sqlite"
token() { "$bin" token issue --user "$1" --expires 1d 2>/dev/null | head -n 1; }
ANALYST_TOKEN="$(token analyst)"
RESEARCHER_TOKEN="$(token researcher)"
APPROVER_TOKEN="$(token approver)"
export ANALYST_TOKEN RESEARCHER_TOKEN APPROVER_TOKEN

"$bin" serve --listen 127.0.0.1:0 --library queries --register-refresh 0 >"$work/serve.log" 2>&1 &
server=$!
url=""
for _ in $(seq 1 300); do
    url="$(grep -o 'listening on http://[0-9.:]*' "$work/serve.log" | head -n 1 | sed 's/listening on //' || true)"
    [ -n "$url" ] && break
    if ! kill -0 "$server" 2>/dev/null; then cat "$work/serve.log" >&2; exit 2; fi
    sleep 0.2
done
if [ -z "$url" ]; then echo "error: the server did not start" >&2; cat "$work/serve.log" >&2; exit 2; fi
echo "== pages of $url in $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"

shots="$work/shots"
CARELENS_URL="$url" SHOTS="$shots" node tests/browser/flows.mjs
if [ "${1:-}" = "--update-docs" ]; then
    mkdir -p docs/screenshots
    cp "$shots"/*.png docs/screenshots/
    echo "== screenshots copied to docs/screenshots/"
fi
