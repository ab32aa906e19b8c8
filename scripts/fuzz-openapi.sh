#!/usr/bin/env bash
# A bounded fuzz run of the JSON API against its own OpenAPI document: starts
# `rlfc demo` on a scratch data directory and a free port, signs in with the dev login,
# makes a read+play API token, and runs schemathesis (from PyPI) with every check, as
# anonymous requests and with the token. Exits non-zero on any failure.
#
#   scripts/fuzz-openapi.sh [MAX_EXAMPLES]     (default 25 per operation)
#
# Needs: a built `rlfc` (cargo build), the models (`rlfc models fetch`), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-25}"
target="${CARGO_TARGET_DIR:-target}"
rlfc="$target/debug/rlfc"
[ -x "$rlfc" ] || { echo "build rlfc first: cargo build" >&2; exit 2; }
command -v schemathesis >/dev/null || python3 -m pip install --quiet schemathesis
port="${FUZZ_PORT:-8099}"
base="http://127.0.0.1:$port"
data="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
RLFC_WEB_BIND="127.0.0.1:$port" RLFC_ARENA_MAX_LIVE_MATCHES=1 RLFC_ASSETS_DIR="$PWD/assets" \
  "$rlfc" --data-dir "$data" demo >"$data/demo.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
  curl -sf "$base/api/v1/openapi.json" >/dev/null && break
  sleep 1
done
jar="$data/cookies"
csrf="$(curl -sf -c "$jar" -X POST "$base/api/v1/auth/dev-login?account=5" |
  python3 -c 'import sys, json; print(json.load(sys.stdin)["csrf_token"])')"
token="$(curl -sf -b "$jar" -H "x-csrf-token: $csrf" -H 'content-type: application/json' \
  -d '{"name":"fuzz","scopes":["read","play"]}' "$base/api/v1/tokens" |
  python3 -c 'import sys, json; print(json.load(sys.stdin)["token"])')"
status=0
echo "== anonymous"
schemathesis run "$base/api/v1/openapi.json" --url "$base" -n "$examples" --workers 2 || status=1
echo "== with a read+play API token"
# The token is sent on every request, so schemathesis's own "ignored auth" probe (it
# expects its made-up credentials to be refused) does not apply.
schemathesis run "$base/api/v1/openapi.json" --url "$base" -n "$examples" --workers 2 \
  -H "Authorization: Bearer $token" --exclude-checks ignored_auth || status=1
exit "$status"
