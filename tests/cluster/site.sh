# Sourced by cluster.sh: the parts of the test cluster that make it a *shared site*.
#
#   * PostgreSQL 15 (Debian's), started directly as the postgres user (no systemd), listening
#     on a unix socket only, in the state directory.  Authentication is `peer`: a connection's
#     database role is the OS user that opened it, so the site catalog's row-level security
#     sees the real person.  A database `cybershuttle` and a role per test user and for root
#     (the tests run as root); none of them is a superuser, so RLS applies to all of them.
#   * A site-wide Cybershuttle install (a venv made from /usr/bin/python3, world-readable,
#     the project installed NON-editable: CI's clone may sit where other users cannot read),
#     the way a site ships it in a module.  Reinstalled only when the sources changed.
#
# Relies on cluster.sh's helpers (say, die, live_pid, wait_for, write_file) and settings
# (STATE, LOGS, TEST_USER, OTHER_USER, MARKER).

PACKAGES+=(postgresql-15)

PG_BIN=/usr/lib/postgresql/15/bin
PG_DIR=$STATE/postgres          # owned by postgres
PG_DATA=$PG_DIR/data
PG_SOCK_DIR=$PG_DIR/run         # the unix socket (.s.PGSQL.5432) lives here
PG_PID=$PG_DATA/postmaster.pid  # written by postgres itself; first line is the postmaster's pid
PG_DB=cybershuttle
# What CYBERSHUTTLE_SITE_CATALOG is set to: a libpq URI whose host is the socket directory.
PG_URI="postgresql:///$PG_DB?host=$PG_SOCK_DIR"

SITE_VENV=$STATE/site           # the site-wide install (CS_TEST_CLI = $SITE_VENV/bin/cybershuttle), a symlink
# cluster.sh lives in tests/cluster/: the project is two levels up.
SITE_SRC=$(realpath -- "$(dirname -- "${BASH_SOURCE[0]}")/../..")

pg() { runuser -u postgres -- "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK_DIR" "$@"; }
pg_up() { runuser -u postgres -- "$PG_BIN/pg_isready" -q -h "$PG_SOCK_DIR"; }

ensure_postgres() {
    [[ -x $PG_BIN/postgres ]] || die "PostgreSQL 15 is missing ($PG_BIN/postgres): is postgresql-15 installed?"
    # 0755 down to the socket directory: every user must reach the socket (peer auth decides).
    install -d -m 0755 -o postgres -g postgres "$PG_DIR" "$PG_SOCK_DIR"
    if [[ ! -s $PG_DATA/PG_VERSION ]]; then
        say "postgres: initialising $PG_DATA"
        rm -rf -- "$PG_DATA"
        # --auth-local=peer: the role is the OS user; no passwords exist anywhere.
        runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" --auth-local=peer --auth-host=reject \
            -U postgres -E UTF8 --locale=C.UTF-8 9>&- >>"$LOGS/postgres-initdb.log" 2>&1 ||
            die "initdb failed (see $LOGS/postgres-initdb.log)"
    fi
    # Settings as command-line options, so Debian's /etc/postgresql is never involved:
    # no TCP listener at all, the socket in our directory.
    if ! live_pid "$PG_PID" postgres >/dev/null; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t 60 \
            -o "-c listen_addresses='' -c unix_socket_directories='$PG_SOCK_DIR' -c max_connections=200" \
            start 9>&- >>"$LOGS/postgres.stderr" 2>&1 ||
            die "postgres did not start (see $PG_DIR/postgres.log)"
        say "postgres: started (socket in $PG_SOCK_DIR)"
    fi
    wait_for 30 pg_up || die "postgres does not answer on $PG_SOCK_DIR (see $PG_DIR/postgres.log)"
    ensure_pg_roles
}

ensure_pg_roles() {
    local u
    for u in "$TEST_USER" "$OTHER_USER" root; do
        # NOSUPERUSER etc. are the defaults; spelled out because RLS only binds non-superusers.
        pg -d postgres -c "DO \$\$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$u') THEN
                CREATE ROLE \"$u\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
            END IF; END \$\$;"
    done
    if [[ -z $(pg -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
        # Owned by postgres: the catalog's tables belong to the administrator, never to a
        # user, because a table's owner could drop its row-level security.
        pg -d postgres -c "CREATE DATABASE $PG_DB OWNER postgres"
        say "postgres: created database $PG_DB"
    fi
    # Only the site's users may connect (a role without CONNECT is refused with a clear error).
    pg -d postgres -c "REVOKE CONNECT ON DATABASE $PG_DB FROM PUBLIC;
        GRANT CONNECT ON DATABASE $PG_DB TO \"$TEST_USER\", \"$OTHER_USER\", root;"
    # The schema (tables, RLS policies, triggers) is the project's own migration, run as the
    # administrator; a no-op when the schema is current.  Needs the site install.
    if [[ -x $SITE_VENV/bin/cybershuttle ]] &&
        "$SITE_VENV/bin/python" -c 'import cybershuttle.cli.site' 2>/dev/null; then
        (cd / && runuser -u postgres -- env CYBERSHUTTLE_SITE_CATALOG="$PG_URI" HOME="$PG_DIR" \
            "$SITE_VENV/bin/cybershuttle" site upgrade 9>&- >>"$LOGS/site-upgrade.log" 2>&1) ||
            die "the site catalog's schema could not be created (see $LOGS/site-upgrade.log)"
    fi
}

stop_postgres() {
    local pid
    if ! pid=$(live_pid "$PG_PID" postgres); then
        say "postgres: not running"
        return 0
    fi
    # SIGINT = "fast" shutdown: connected clients are disconnected (TERM would wait for them).
    kill -INT "$pid" 2>/dev/null || true
    wait_for 30 eval '! live_pid "$PG_PID" postgres' || {
        say "postgres: did not exit on INT, sending QUIT"
        kill -QUIT "$pid" 2>/dev/null || true
    }
    say "postgres: stopped (pid $pid)"
}

# Hash of everything that goes into the wheel, so `start` reinstalls only after a change.
site_sources_hash() {
    (cd "$SITE_SRC" && find pyproject.toml README.md cybershuttle cybershuttle_magic server_extension \
        jupyterlab_cybershuttle cybershuttle-airavata-compat.pth -type f \
        ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 2>/dev/null |
        sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

# The venv is made anew under site-<hash> for each change of the sources and $SITE_VENV is a
# symlink switched to it atomically: servers and tests running from the previous install
# (a hub's user servers, a test's CLI) never see a half-installed package.  The previous
# install is kept for them; older ones are removed.
ensure_site_cli() {
    local hash target uv old current
    hash=$(site_sources_hash)
    target=$STATE/site-${hash:0:16}
    [[ -L $SITE_VENV && $(readlink -- "$SITE_VENV") == "$target" && -e $target/.installed ]] && return 0
    [[ ! -e $SITE_VENV || -L $SITE_VENV ]] || rm -rf -- "$SITE_VENV"   # a plain directory from before
    if [[ ! -e $target/.installed ]]; then
        say "site install: installing Cybershuttle into $target (log: $LOGS/site-install.log)"
        rm -rf -- "$target"
        # /usr/bin/python3, not the pyenv python: the test users cannot read root's home.
        /usr/bin/python3 -m venv "$target" || die "cannot make the site venv $target (is python3-venv installed?)"
        uv=$(command -v uv || true)
        [[ -n $uv ]] || [[ ! -x $SITE_SRC/.venv/bin/uv ]] || uv=$SITE_SRC/.venv/bin/uv
        [[ -n $uv ]] || { "$target/bin/python" -m pip install -q uv 9>&- >>"$LOGS/site-install.log" 2>&1 &&
            uv=$target/bin/uv; } || die "cannot install uv into $target (see $LOGS/site-install.log)"
        # Non-editable, and rebuilt from the sources (uv would otherwise reuse a cached wheel of
        # this directory).  The [hub] extra: jupyterhub-singleuser for the hub's user servers.
        (cd "$SITE_SRC" && "$uv" pip install --python "$target/bin/python" --reinstall-package cybershuttle \
            --refresh-package cybershuttle "$SITE_SRC[hub]") 9>&- >>"$LOGS/site-install.log" 2>&1 ||
            { tail -n 20 "$LOGS/site-install.log" >&2; die "installing Cybershuttle into $target failed"; }
        chmod -R a+rX -- "$target"
        touch -- "$target/.installed"
    fi
    current=$(readlink -- "$SITE_VENV" 2>/dev/null || true)
    ln -sfn -- "$target" "$SITE_VENV.new" && mv -Tf -- "$SITE_VENV.new" "$SITE_VENV"
    for old in "$STATE"/site-*; do
        [[ $old == "$target" || $old == "$current" || ! -d $old ]] || rm -rf -- "$old"
    done
    say "site install: $SITE_VENV/bin/cybershuttle -> $target"
}

site_env() {
    printf 'export %s=%q\n' \
        CS_TEST_SITE_CATALOG "$PG_URI" \
        CS_TEST_PG_SOCKET_DIR "$PG_SOCK_DIR" \
        CS_TEST_CLI "$SITE_VENV/bin/cybershuttle"
}
