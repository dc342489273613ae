#!/usr/bin/env bash
# Renders a real report in headless Chromium and checks that it is drawn: the query
# library is run on the sample data (a throwaway ledger, so nobody's budget is touched),
# Chromium dumps the page's DOM and screenshots its top, and scripts/check_report.py
# checks both (query sections, charts, the explainer box, chart bars, text).
#
#   scripts/check-report-in-browser.sh              # check only
#   scripts/check-report-in-browser.sh --update-docs # also refresh docs/report-*.png
#
# Needs Chromium (Debian: apt-get install chromium) and Python 3; `.ci/run` runs this
# when Chromium is present. Set CHROMIUM to use another binary.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
if [ -z "$CHROMIUM" ]; then
    echo "error: Chromium not found (apt-get install chromium, or set CHROMIUM)" >&2
    exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== running the query library on the sample data"
cargo run --quiet --locked -- run queries/ --out "$work/report" \
    --config sample-data/carelens.toml --ledger "$work/ledger.sqlite" --user analyst >/dev/null
sections="$(find queries -maxdepth 1 -name '*.sql' | wc -l)"

# Flags for a closed machine: no sandbox as root, no GPU, no background network traffic.
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync
       --disable-extensions --hide-scrollbars --user-data-dir="$work/profile")
page="file://$work/report/report.html"

echo "== rendering in $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
timeout 120 "$CHROMIUM" "${flags[@]}" --dump-dom "$page" >"$work/dom.html" 2>"$work/chromium.log"
timeout 120 "$CHROMIUM" "${flags[@]}" --window-size=1100,5200 --screenshot="$work/shot.png" \
    "$page" >>"$work/chromium.log" 2>&1

crops=()
if [ "${1:-}" = "--update-docs" ]; then
    crops=(--save-crop "0:2450:docs/report-summary.png")
fi
python3 scripts/check_report.py "$work/dom.html" "$work/shot.png" --sections "$sections" --charts 5 "${crops[@]}"

# On paper: every row printed (tables out of their scroll boxes), each query on a page of
# its own. A printed page holds at most about 40 rows, so the PDF needs at least one page
# per query plus one per 40 result rows (here 43 pages; printed from scroll boxes, 20).
timeout 120 "$CHROMIUM" "${flags[@]}" --print-to-pdf="$work/report.pdf" "$page" \
    >>"$work/chromium.log" 2>&1
python3 - "$work/report.pdf" "$work/dom.html" "$sections" <<'PY'
import re, sys
pdf, dom, sections = open(sys.argv[1], "rb").read(), open(sys.argv[2]).read(), int(sys.argv[3])
pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
rows = sum(body.count("<tr") for body in re.findall(r"<tbody>(.*?)</tbody>", dom, re.S))
needed = sections + rows // 40
print(f"printed: {pages} pages for {sections} queries and {rows} result rows (at least {needed})")
if rows == 0 or pages < needed:
    sys.exit("the printed report leaves rows out (tables cut to their scroll boxes?)")
PY

# A report of one grouped query (answered from the ledger above, at no cost): its chart
# and table, checked the same way.
cargo run --quiet --locked -- run queries/emergency_admissions.sql --out "$work/one" \
    --config sample-data/carelens.toml --ledger "$work/ledger.sqlite" --user analyst >/dev/null
page="file://$work/one/report.html"
timeout 120 "$CHROMIUM" "${flags[@]}" --dump-dom "$page" >"$work/dom-one.html" 2>>"$work/chromium.log"
timeout 120 "$CHROMIUM" "${flags[@]}" --window-size=1100,3400 --screenshot="$work/one.png" \
    "$page" >>"$work/chromium.log" 2>&1
if [ "${1:-}" = "--update-docs" ]; then
    crops=(--save-crop "932:2720:docs/report-query.png")
fi
python3 scripts/check_report.py "$work/dom-one.html" "$work/one.png" --sections 1 "${crops[@]}"
