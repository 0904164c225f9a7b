#!/usr/bin/env bash
# The site's JupyterHub (deploy/jupyterhub/) for the browser test of two hub users: the test
# cluster's shared install, its PostgreSQL site catalog, PAM logins of csuser and csother (their
# passwords: tests/cluster/hub.sh).  Its state (database, cookie secret) lives in a temp dir removed
# on exit.  The test starts it and stops it with SIGTERM, which stops the users' servers and the proxy.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$(bash "$root/tests/cluster/cluster.sh" env)"
: "${CS_TEST_CLI:?the test cluster has no site install: run 'bash tests/cluster/cluster.sh start'}"
work="$(mktemp -d /tmp/cs-hub-tests.XXXXXX)"

export CS_HUB_ENV="$(dirname "$(dirname "$CS_TEST_CLI")")"
export CS_HUB_STATE="$work/state"
export CS_HUB_PORT="${CS_HUB_PORT:-18000}" CS_HUB_API_PORT="${CS_HUB_API_PORT:-18081}"
export CS_HUB_PROXY_API_PORT="${CS_HUB_PROXY_API_PORT:-18001}"
export CS_HUB_USERS="$CS_TEST_USER,$CS_TEST_OTHER_USER"
export CYBERSHUTTLE_SITE_CATALOG="$CS_TEST_SITE_CATALOG"

cleanup() {
  if [ -n "${hub:-}" ] && kill -TERM "$hub" 2>/dev/null; then
    wait "$hub" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' TERM INT

bash "$root/deploy/jupyterhub/start.sh" &
hub=$!
wait "$hub"
