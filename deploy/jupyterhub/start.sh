#!/usr/bin/env bash
# Starts the site's JupyterHub in the foreground (stop it with Ctrl-C or SIGTERM: it stops the
# proxy and every user's server with it).  Runs as root: each user's server runs as that user.
#
#   CS_HUB_ENV=/opt/cybershuttle  CS_HUB_GROUPS=cybershuttle  bash deploy/jupyterhub/start.sh
#
# Settings (environment): see README.md beside this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

die() { printf 'hub: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "the hub must run as root: it starts each user's server as that user (sudo make hub)"

export CS_HUB_ENV="${CS_HUB_ENV:-/opt/cybershuttle}"
export CS_HUB_STATE="${CS_HUB_STATE:-/var/lib/cybershuttle-hub}"
export CYBERSHUTTLE_SITE_CATALOG="${CYBERSHUTTLE_SITE_CATALOG:-postgresql:///cybershuttle}"
[[ -x $CS_HUB_ENV/bin/jupyterhub && -x $CS_HUB_ENV/bin/jupyterhub-singleuser ]] ||
    die "no JupyterHub in $CS_HUB_ENV: make that shared install first (README.md, 'The shared install'), or set CS_HUB_ENV"
[[ -n ${CS_HUB_USERS:-}${CS_HUB_GROUPS:-} ]] ||
    die "nobody may log in: set CS_HUB_USERS (comma-separated OS users) or CS_HUB_GROUPS (OS groups)"

# The proxy: one on PATH (npm install -g), else the one the project's package.json installs.
if [[ -z ${CS_HUB_PROXY:-} ]]; then
    CS_HUB_PROXY=$(command -v configurable-http-proxy || echo "$root/node_modules/.bin/configurable-http-proxy")
fi
[[ -x $CS_HUB_PROXY ]] ||
    die "configurable-http-proxy not found: run 'jlpm install' in $root (or npm install -g configurable-http-proxy)"
export CS_HUB_PROXY

# The cookie secret and the hub's database live here: root only.
install -d -m 0700 "$CS_HUB_STATE"
# The hub's database records its users' API tokens: start from the state directory, so a relative
# path in a site's own config lands there too.
cd "$CS_HUB_STATE"
export PATH="$CS_HUB_ENV/bin:$PATH"
exec "$CS_HUB_ENV/bin/jupyterhub" -f "$here/jupyterhub_config.py" "$@"
