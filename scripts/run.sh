#!/usr/bin/env bash
# run.sh is `make run`'s local demo: the worker and `webhookd api` side by side, on the
# database `make run` migrated, and a portal link for account 1 printed before the worker's
# logs. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly BIN=bin/webhookd
# The demo posts to a receiver on loopback, which the destination guard refuses unless told.
export WEBHOOKD_ALLOW_PRIVATE_NETWORKS="${WEBHOOKD_ALLOW_PRIVATE_NETWORKS:-true}"
# A development key for this demo only: production sets its own, shared with the monolith
# that mints its users' tokens.
export WEBHOOKD_API_SECRET="${WEBHOOKD_API_SECRET:-webhookd-dev-secret-for-make-run-only}"

"$BIN" api &
api=$!
trap 'kill "$api" 2>/dev/null || true; wait "$api" 2>/dev/null || true' EXIT

token="$("$BIN" token --account 1 --scope "read write" --ttl 24h)"
printf '\nPortal of account 1 (the link is valid for 24 h):\n  http://%s/portal/#token=%s\n\n' \
	"${WEBHOOKD_API_ADDR:-127.0.0.1:8070}" "$token"

"$BIN" run
