#!/usr/bin/env bash
# Install the dashboards' front-end assets from the npm registry (offline at run time).
#   scripts/build-assets.sh          # idempotent; a no-op when the assets are in place
# deck.gl is pinned in dashboards/web/package.json + package-lock.json; `npm ci` installs it
# into dashboards/web/node_modules (git-ignored), and its dist.min.js is copied to
# dashboards/assets/00_deckgl.min.js (Dash loads assets alphabetically, so deck.gl comes
# before 10_citypulse.js, which uses the global `deck`).  No CDN is ever used at run time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
web="$root/dashboards/web"
assets="$root/dashboards/assets"
target="$assets/00_deckgl.min.js"
src="$web/node_modules/deck.gl/dist.min.js"
stamp="$web/node_modules/.citypulse-stamp"
if [[ -s $target && -f $stamp && $stamp -nt $web/package-lock.json ]] && cmp -s "$src" "$target"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "build-assets: npm not found; install Node.js (apt-get install -y nodejs npm)" >&2
  exit 1
fi
echo "build-assets: installing deck.gl from the npm registry into dashboards/web/node_modules"
(cd "$web" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
touch "$stamp"
mkdir -p "$assets"
cp "$src" "$target"
echo "build-assets: $(basename "$target") ($(wc -c <"$target") bytes) ready"
