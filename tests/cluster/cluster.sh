#!/usr/bin/env bash
# Loopback "HPC cluster" for Cybershuttle's integration tests.
#
#   cluster.sh start    (root) install what is missing, start every service that is not running
#   cluster.sh env      print `export` lines describing the cluster (works without root)
#   cluster.sh status   one line per service; exit 0 only if all of them run
#   cluster.sh stop     (root) stop the daemons that `start` started (by their pid files)
#   cluster.sh exec NODE CMD...  (root) run CMD inside compute node NODE (tests/cluster/nodes.sh)
#   cluster.sh node-ssh on|off   (root) let users SSH to the nodes (with a job there), or not
#
# What `start` gives you, all on 127.0.0.1 and all on one machine:
#   * an OpenSSH server on port $CS_TEST_PORT (2222) that accepts key logins for two
#     unprivileged users, csuser and csother, with a pinned host key (known_hosts file);
#   * munge + a single-node Slurm 22.05 (slurmctld, slurmd) with two partitions
#     (debug = default, short) and accounting through slurmdbd + MariaDB, so `sacct` works;
#   * Lmod with a small tree of sample modulefiles, visible in csuser's login shells.
#   * PostgreSQL 15 on a unix socket (peer authentication, database `cybershuttle`, a role per
#     test user) and a site-wide Cybershuttle install every user can run (tests/cluster/site.sh).
#
# Design rules, and why:
#   * No systemd: CI containers have none, so every daemon is started directly, with its
#     config, pid file, log and data in one state directory ($CS_CLUSTER_DIR).
#   * Idempotent: each service is started only if its pid file names a live process of the
#     right name, so a second `start` is a quick no-op and never starts duplicates.  Tests
#     (or several pytest workers) can all call `start` without coordinating; a lock file
#     serialises concurrent calls.
#   * `stop` only signals processes whose pid files live in the state directory; it never
#     kills by name, so it cannot hit a real sshd/munged/mariadbd on the same machine.
#   * Users, keys, packages and the MariaDB data survive `stop`, so the next start is fast.
#   * Files in /etc (slurm.conf, slurmdbd.conf, a profile.d snippet) carry a marker line;
#     a slurm config without it is a real site's config and is never overwritten.
#
# Environment overrides: CS_CLUSTER_DIR (state dir, default /var/tmp/cybershuttle-cluster),
# CS_TEST_PORT (sshd port, default 2222), CS_TEST_NO_UNIX_PORT (the same sshd without Unix-socket
# forwarding, default CS_TEST_PORT + 1), CS_DB_PORT (MariaDB port, default 3307).
set -euo pipefail

# ----------------------------------------------------------------------------- settings

STATE=${CS_CLUSTER_DIR:-/var/tmp/cybershuttle-cluster}
# Absolute, because the path ends up in config files read by daemons with another cwd.
STATE=$(realpath -m -- "$STATE")
PORT=${CS_TEST_PORT:-2222}
# A second port of the same sshd, where forwarding to Unix sockets is off: a site with
# `AllowStreamLocalForwarding no`, whose runtimes fall back to TCP ports with CurveZMQ, and TCP forwards
# only to 127.0.0.1 (`PermitOpen`).
NO_UNIX_PORT=${CS_TEST_NO_UNIX_PORT:-$((PORT + 1))}
# MariaDB gets its own port (not 3306) so it cannot clash with a database already on the box.
DB_PORT=${CS_DB_PORT:-3307}

TEST_USER=csuser
OTHER_USER=csother
CLUSTER=cstest
ACCOUNT=csaccount
MARKER="# Written by Cybershuttle tests/cluster/cluster.sh -- test cluster, safe to delete."

RUN=$STATE/run            # pid files of the daemons that run as root
LOGS=$STATE/log
KEYS=$STATE/keys
SSHD_DIR=$STATE/sshd
KNOWN_HOSTS=$STATE/known_hosts
MUNGE_DIR=$STATE/munge    # owned by munge: munged drops privileges before writing here
DB_DIR=$STATE/mariadb     # owned by mysql, for the same reason
DB_DATA=$DB_DIR/data
DB_SOCK=$DB_DIR/mysqld.sock
SLURM_DIR=$STATE/slurm
MODULEPATH_DIR=$STATE/modulefiles
APPS=$STATE/apps          # the "software" the sample modules put on PATH
# The CPU build of PyTorch that the pytorch/2.13 module provides, as sites provide it.
TORCH_WHEEL=${CS_TORCH_WHEEL:-/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl}
ENV_FILE=$STATE/cluster.env

SLURM_CONF=/etc/slurm/slurm.conf
SLURMDBD_CONF=/etc/slurm/slurmdbd.conf
PROFILE_SNIPPET=/etc/profile.d/cybershuttle-test-modules.sh

SSHD_PID=$RUN/sshd.pid
MUNGED_PID=$MUNGE_DIR/munged.pid
MARIADB_PID=$DB_DIR/mariadbd.pid
SLURMDBD_PID=$RUN/slurmdbd.pid
SLURMCTLD_PID=$RUN/slurmctld.pid
# SlurmdPidFile is per node (slurmd-%n.pid, tests/cluster/nodes.sh); this is the login node's.
SLURMD_PID=$RUN/slurmd-localhost.pid

# Debian packages the cluster (and, later, the project's tests) need.  python3-venv: the
# test user has no access to root's pyenv, so remote code runs in venvs made from
# /usr/bin/python3.  sshfs/fuse3/rclone/rsync: file-transfer back ends the project tests.
# zsh: session recording is tested in both shells it supports.
PACKAGES=(openssh-server openssh-client munge slurmctld slurmd slurm-client slurmdbd
          mariadb-server lmod python3 python3-venv sshfs fuse3 rclone rsync zsh)

# Root's PATH in some images lacks the sbin directories, where the daemons live.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# ----------------------------------------------------------------------------- helpers

say() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: ERROR: %s\n' "$*" >&2; exit 1; }

need_root() { [[ $(id -u) -eq 0 ]] || die "'$1' must run as root (it installs packages and starts daemons)"; }

# Serialise start/stop (several test processes may call `start` at once).  fd 9 holds the
# lock; every daemon is launched with 9>&- so that it does not inherit the lock forever.
take_lock() {
    install -d -m 0755 "$STATE"
    exec 9>"$STATE/.lock"
    flock -w 900 9 || die "timed out waiting for another cluster.sh holding $STATE/.lock"
}

# Print the pid recorded in pid file $1 if it names a live (non-zombie) process whose
# name is $2; fail otherwise.  Checking the name guards against a recycled pid.
live_pid() {
    local file=$1 name=$2 pid stat
    [[ -r $file ]] || return 1
    pid=$(head -n1 -- "$file" 2>/dev/null | tr -d '[:space:]') || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }               # field 3 (state) follows the parenthesised name
    [[ ${stat:0:1} != Z ]] || return 1
    printf '%s\n' "$pid"
}

# Poll "$@" (output discarded) every 0.2 s for at most $1 seconds.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# write_file PATH MODE OWNER[:GROUP] < content
# Replaces PATH only when the content differs (atomically, via rename), so unchanged
# configs keep their mtime and we can tell whether a running daemon needs a restart:
# FILE_CHANGED is 1 if the file was (re)written, else 0.  Mode and owner are always enforced.
FILE_CHANGED=0
write_file() {
    local path=$1 mode=$2 owner=$3 tmp
    tmp=$(mktemp "$path.XXXXXX")
    cat >"$tmp"
    if [[ -f $path ]] && cmp -s -- "$tmp" "$path"; then
        rm -f -- "$tmp"
        FILE_CHANGED=0
        chmod "$mode" -- "$path"
        chown "$owner" -- "$path"
    else
        # Mode and owner before the rename, so nobody ever sees the file with wrong ones
        # (sshd's StrictModes would reject an authorized_keys owned by root).
        chmod "$mode" -- "$tmp"
        chown "$owner" -- "$tmp"
        mv -f -- "$tmp" "$path"
        FILE_CHANGED=1
    fi
}

# Refuse to overwrite a config file that this script did not write.
check_ours() {
    [[ ! -e $1 ]] || grep -qxF -- "$MARKER" "$1" ||
        die "$1 exists and was not written by this script (a real site config?); not touching it"
}

# Send TERM to a daemon we started, wait for it to go, KILL as a last resort.
stop_daemon() {
    local label=$1 file=$2 name=$3 pid i
    if ! pid=$(live_pid "$file" "$name"); then
        say "$label: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    # mariadbd flushes InnoDB on shutdown; give it (and the others) up to 30 s.
    for ((i = 0; i < 300; i++)); do
        live_pid "$file" "$name" >/dev/null || break
        sleep 0.1
    done
    if live_pid "$file" "$name" >/dev/null; then
        say "$label: did not exit on TERM, sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f -- "$file"
    say "$label: stopped (pid $pid)"
}

# PostgreSQL site catalog and the site-wide install (issue 15): tests/cluster/site.sh.
# shellcheck source=site.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/site.sh"
# Passwords for the JupyterHub tests' PAM logins: tests/cluster/hub.sh.
# shellcheck source=hub.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/hub.sh"
# Local conda channels for the conda environment tests (issue 17): tests/cluster/conda.sh.
# shellcheck source=conda.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/conda.sh"
# Compute nodes node1/node2 in network namespaces (issue 14): tests/cluster/nodes.sh.
# shellcheck source=nodes.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/nodes.sh"

# ----------------------------------------------------------------------------- packages

ensure_packages() {
    local missing=() p installed
    # One dpkg-query for all packages: "ii" = installed and configured.
    installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${PACKAGES[@]}" 2>/dev/null || true)
    for p in "${PACKAGES[@]}"; do
        grep -qE "^ii +$p\$" <<<"$installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0

    say "installing ${missing[*]} (log: $LOGS/apt.log)"
    # Without systemd, package scripts would start services through their init scripts
    # (an sshd on port 22, a MariaDB on 3306, ...).  A policy-rc.d that answers 101
    # ("action forbidden") stops that; Docker images often have one already.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        added_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            "${missing[@]}"; } 9>&- >>"$LOGS/apt.log" 2>&1; then
        tail -n 30 "$LOGS/apt.log" >&2
        die "package installation failed (see $LOGS/apt.log)"
    fi
    if ((added_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
}

# ----------------------------------------------------------------------------- users, keys

home_of() { getent passwd "$1" | cut -d: -f6; }

ensure_user() {
    local user=$1 home key=$KEYS/$1
    if ! id -u "$user" >/dev/null 2>&1; then
        # Login shell bash: Lmod's `module` only exists in a bash login shell.
        useradd -m -s /bin/bash -c "Cybershuttle test user" "$user"
        say "created user $user"
    fi
    # useradd leaves the account locked ('!' as password).  With UsePAM no, sshd refuses
    # locked accounts even for public-key logins.  '*' = no usable password, not locked.
    # A real password (the hub's PAM login, tests/cluster/hub.sh) is kept.
    local hash
    hash=$(getent shadow "$user" | cut -d: -f2)
    if [[ -z $hash || $hash == '!'* ]]; then
        usermod -p '*' "$user"
    fi

    # A key pair per user, made once, kept across stop/start.  Private key: root only
    # (the tests run as root); the public half goes into the user's authorized_keys.
    if [[ ! -s $key || ! -s $key.pub ]]; then
        rm -f -- "$key" "$key.pub"
        ssh-keygen -q -t ed25519 -N '' -C "$user@cybershuttle-test-cluster" -f "$key"
    fi
    chmod 0600 "$key"

    home=$(home_of "$user")
    # Homes readable by others, as on many HPC sites (and whatever useradd's default is):
    # csother can then look into csuser's home, so privacy tests detect files the project
    # leaves world-readable instead of passing because the directory happens to be closed.
    chmod 0755 "$home"
    # StrictModes demands an .ssh dir and authorized_keys owned by the user, not writable by others.
    install -d -m 0700 -o "$user" -g "$(id -gn "$user")" "$home/.ssh"
    write_file "$home/.ssh/authorized_keys" 0600 "$user:$(id -gn "$user")" <"$key.pub"
}

# ----------------------------------------------------------------------------- sshd

# What the login node's sshd and the compute nodes' (tests/cluster/nodes.sh) have in common.
sshd_common_settings() {
    cat <<EOF
PermitRootLogin no
AllowUsers $TEST_USER $OTHER_USER
StrictModes yes
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
X11Forwarding no
PrintMotd no
UseDNS no
# Tests open many connections and channels at once (parallel workers, SFTP + exec +
# direct-tcpip on one connection); the defaults (10 sessions, MaxStartups 10) drop some.
MaxSessions 64
MaxStartups 64:30:256
LogLevel INFO
Subsystem sftp internal-sftp
EOF
}

ensure_sshd() {
    local cfg=$SSHD_DIR/sshd_config hostkey=$SSHD_DIR/ssh_host_ed25519_key pid
    install -d -m 0700 "$SSHD_DIR"
    if [[ ! -s $hostkey || ! -s $hostkey.pub ]]; then
        rm -f -- "$hostkey" "$hostkey.pub"
        ssh-keygen -q -t ed25519 -N '' -C "cybershuttle-test-cluster-host" -f "$hostkey"
    fi

    # The known_hosts line tests use to verify the server (StrictHostKeyChecking=yes).
    # For a non-22 port both OpenSSH and paramiko look the host up as "[host]:port".
    local kt kb hp_ip hp_name
    read -r kt kb _ <"$hostkey.pub"
    if [[ $PORT == 22 ]]; then hp_ip=127.0.0.1 hp_name=localhost
    else hp_ip="[127.0.0.1]:$PORT" hp_name="[localhost]:$PORT"; fi
    { printf '%s %s %s\n%s %s %s\n' "$hp_ip" "$kt" "$kb" "$hp_name" "$kt" "$kb"
      printf '[127.0.0.1]:%s %s %s\n' "$NO_UNIX_PORT" "$kt" "$kb"; node_known_hosts; } |
        write_file "$KNOWN_HOSTS" 0644 root:root

    # Own config file: nothing of the system's /etc/ssh/sshd_config applies.
    write_file "$cfg" 0600 root:root <<EOF
$MARKER
Port $PORT
Port $NO_UNIX_PORT
ListenAddress 127.0.0.1
HostKey $hostkey
PidFile $SSHD_PID
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# Key logins need no PAM stack.  Without PAM, sshd itself rejects locked accounts,
# hence the usermod -p '*' for the test users.
UsePAM no
$(sshd_common_settings)
Match LocalPort $NO_UNIX_PORT
    AllowStreamLocalForwarding no
    # TCP forwards only to the loopback address (a site's PermitOpen): a node behind this port is
    # reached through our relay instead (tests/test_node_transport.py)
    PermitOpen 127.0.0.1:*
EOF
    local changed=$FILE_CHANGED

    if pid=$(live_pid "$SSHD_PID" sshd); then
        ((changed)) || return 0
        say "sshd: config changed, restarting"
        stop_daemon sshd "$SSHD_PID" sshd
    fi
    port_open "$PORT" && die "port $PORT on 127.0.0.1 is already in use by another program (set CS_TEST_PORT)"
    port_open "$NO_UNIX_PORT" &&
        die "port $NO_UNIX_PORT on 127.0.0.1 is already in use by another program (set CS_TEST_NO_UNIX_PORT)"
    install -d -m 0755 /run/sshd     # privilege-separation directory sshd insists on
    /usr/sbin/sshd -t -f "$cfg" || die "sshd rejected $cfg"
    # Absolute path: sshd re-executes itself per connection.  -E: log to our file.
    /usr/sbin/sshd -f "$cfg" -E "$LOGS/sshd.log" </dev/null >>"$LOGS/sshd.stderr" 2>&1 9>&- ||
        die "sshd failed to start (see $LOGS/sshd.stderr and $LOGS/sshd.log)"
    wait_for 10 port_open "$PORT" || die "sshd does not listen on 127.0.0.1:$PORT (see $LOGS/sshd.log)"
    wait_for 5 live_pid "$SSHD_PID" sshd || die "sshd wrote no pid file $SSHD_PID (see $LOGS/sshd.log)"
    say "sshd: listening on 127.0.0.1:$PORT"
}

# ----------------------------------------------------------------------------- munge

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

ensure_munge() {
    local key=/etc/munge/munge.key
    live_pid "$MUNGED_PID" munged >/dev/null && return 0
    if munge_works; then
        # Some other munged (e.g. the system's) already serves the default socket; Slurm
        # is happy with it and it is not ours to manage.
        say "munge: using the munged that is already running (not managed by this script)"
        return 0
    fi
    install -d -m 0700 -o munge -g munge /etc/munge
    if [[ ! -s $key ]]; then
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$key"
        else
            dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
        fi
        say "munge: created $key"
    fi
    chown munge:munge "$key"
    chmod 0400 "$key"
    # munged checks ownership/permissions of its socket, state and log directories.
    install -d -m 0755 -o munge -g munge /run/munge "$MUNGE_DIR"
    install -d -m 0700 -o munge -g munge /var/lib/munge /var/log/munge
    # munged insists that its log file belongs to it, so the shell (root) must not create
    # it through a redirection; early start-up errors go to a separate root-owned file.
    [[ ! -e $MUNGE_DIR/munged.log ]] || chown munge:munge "$MUNGE_DIR/munged.log"
    runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGED_PID" --log-file="$MUNGE_DIR/munged.log" \
        </dev/null >>"$LOGS/munged.stderr" 2>&1 9>&- ||
        die "munged failed to start (see $LOGS/munged.stderr and $MUNGE_DIR/munged.log)"
    wait_for 10 munge_works || die "munge does not answer (see $MUNGE_DIR/munged.log)"
    say "munge: started"
}

# ----------------------------------------------------------------------------- mariadb

# Admin client over the instance's own socket (as root: unix-socket authentication).
# shellcheck disable=SC2120  # called with arguments through wait_for
db() { mariadb --no-defaults --socket="$DB_SOCK" -u root "$@"; }

ensure_mariadb() {
    live_pid "$MARIADB_PID" mariadbd >/dev/null && return 0
    # Data dir owned by mysql (mariadbd drops to it); the parent stays world-readable so a
    # non-root `status` can read the pid file.
    install -d -m 0755 -o mysql -g mysql "$DB_DIR"
    if [[ ! -d $DB_DATA/mysql ]]; then
        say "mariadb: initialising $DB_DATA"
        rm -rf -- "$DB_DATA"
        # --no-defaults everywhere: Debian's /etc/mysql config points at the system socket
        # and datadir; this instance must not touch them.  root@localhost authenticates by
        # unix socket, so no password is needed (or stored) for the admin account.
        mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DATA" \
            --auth-root-authentication-method=socket --skip-test-db \
            9>&- >>"$LOGS/mariadb-install-db.log" 2>&1 ||
            die "mariadb-install-db failed (see $LOGS/mariadb-install-db.log)"
    fi
    port_open "$DB_PORT" && die "port $DB_PORT on 127.0.0.1 is already in use (set CS_DB_PORT)"
    # innodb_lock_wait_timeout=900 as slurmdbd asks.  Its wish for a big buffer pool
    # (logged as an "error" at each start) is ignored: 128 MiB is plenty for test jobs.
    # mariadbd does not daemonise: detach it (own session, stdio to its log, no lock fd).
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DB_DATA" \
        --socket="$DB_SOCK" --pid-file="$MARIADB_PID" --port="$DB_PORT" \
        --bind-address=127.0.0.1 --skip-name-resolve --log-error="$DB_DIR/mariadb.log" \
        --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
        </dev/null >>"$LOGS/mariadb.stderr" 2>&1 9>&- &
    disown
    wait_for 60 db -e 'SELECT 1' || die "mariadb did not come up (see $DB_DIR/mariadb.log)"
    wait_for 5 live_pid "$MARIADB_PID" mariadbd || die "mariadb wrote no pid file (see $DB_DIR/mariadb.log)"
    chmod 0644 "$MARIADB_PID"   # mariadbd makes it 0660; let a non-root `status` read it
    say "mariadb: started on 127.0.0.1:$DB_PORT"
}

# ----------------------------------------------------------------------------- slurm

write_slurm_configs() {
    local cpus mem_mb pass_file=$SLURM_DIR/dbpass
    check_ours "$SLURM_CONF"
    check_ours "$SLURMDBD_CONF"
    install -d -m 0755 /etc/slurm "$SLURM_DIR"
    install -d -m 0700 "$SLURM_DIR/ctld"
    # slurmd's spool must stay 0755: job steps exec their script from it after dropping to
    # the job's user (with 0700, every job fails "execve(): ... Permission denied").
    install -d -m 0755 "$SLURM_DIR/d"

    cpus=$(nproc)
    # Leave 1 GiB for the OS: if RealMemory exceeded what slurmd measures, the node would
    # be drained ("Low RealMemory").
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
    if ((mem_mb > 2048)); then mem_mb=$((mem_mb - 1024)); else mem_mb=$((mem_mb / 2)); fi

    # Written before any Slurm command runs: without a slurm.conf, 22.05 tries a DNS SRV
    # lookup for a "configless" controller and hangs/fails.
    write_file "$SLURM_CONF" 0644 root:root <<EOF
$MARKER
# Single-node loopback cluster.  State, logs and pid files live in $STATE.
ClusterName=$CLUSTER
# "localhost" (and slurmd -N localhost) keeps this independent of the machine's hostname;
# the address is the login node's on the nodes' bridge, reachable from every node.
SlurmctldHost=localhost($NODE_LOGIN_ADDR)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$SLURM_DIR/ctld
# One slurmd per node on one filesystem: %n (the node name) keeps their files apart.
SlurmdSpoolDir=$SLURM_DIR/d-%n
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd-%n.log
# No cgroups in a container: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
# A node that was down (e.g. slurmd stopped) becomes usable again when slurmd returns.
ReturnToService=2
SchedulerType=sched/backfill
# Schedule every second, so test jobs start within about a second of submission.
SchedulerParameters=sched_interval=1
KillWait=5
# Array task ids must stay below this; low here (the default is 1001) so a test can see a sweep split.
MaxArraySize=100
# No mail on this box; the default (mail) is absent and slurmctld logs an error each start.
MailProg=/bin/true
InactiveLimit=0
MinJobAge=300
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.txt
# Accounting through slurmdbd: gives sacct, with memory/CPU figures from jobacct_gather.
AccountingStorageType=accounting_storage/slurmdbd
# The login node's bridge address: sacct inside a job on a node reaches slurmdbd too.
AccountingStorageHost=$NODE_LOGIN_ADDR
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
# Sample every second: test jobs are short, and with the default 30 s they finish before
# the first sample, leaving MaxRSS empty in sacct.
JobAcctGatherFrequency=task=1
$(slurm_nodes_conf "$cpus" "$mem_mb")
EOF
    SLURM_CONF_CHANGED=$FILE_CHANGED
    write_gres_conf
    write_task_prolog

    # Password of the MariaDB account slurmdbd uses; random, made once.
    if [[ ! -s $pass_file ]]; then
        (umask 077; head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$pass_file")
    fi
    DB_PASS=$(<"$pass_file")

    # slurmdbd refuses a config readable by others (it holds the DB password); owner must
    # be SlurmUser (root).
    write_file "$SLURMDBD_CONF" 0600 root:root <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=$SLURMDBD_PID
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    SLURMDBD_CONF_CHANGED=$FILE_CHANGED
}

ensure_db_account() {
    # Idempotent; cheap enough to run on every start.
    # shellcheck disable=SC2119
    db <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

dbd_answers() { sacctmgr -nP list cluster format=cluster; }

ensure_slurmdbd() {
    if live_pid "$SLURMDBD_PID" slurmdbd >/dev/null; then
        ((SLURMDBD_CONF_CHANGED)) || return 0
        say "slurmdbd: config changed, restarting"
        stop_daemon slurmdbd "$SLURMDBD_PID" slurmdbd
    fi
    slurmdbd </dev/null >>"$LOGS/slurmdbd.log" 2>&1 9>&- || die "slurmdbd failed to start (see $LOGS/slurmdbd.log)"
    # The first start creates the accounting tables: allow it some time.
    wait_for 60 dbd_answers || die "slurmdbd does not answer (see $LOGS/slurmdbd.log)"
    say "slurmdbd: started"
}

ensure_accounting() {
    local out u
    # Capture, then grep: `cmd | grep -q` can fail under pipefail when grep exits early.
    out=$(sacctmgr -nP list cluster format=cluster)
    grep -qx "$CLUSTER" <<<"$out" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    out=$(sacctmgr -nP list account format=account)
    grep -qx "$ACCOUNT" <<<"$out" ||
        sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" \
            description="Cybershuttle tests" organization=cybershuttle >/dev/null
    out=$(sacctmgr -nP list assoc cluster="$CLUSTER" account="$ACCOUNT" format=user)
    for u in "$TEST_USER" "$OTHER_USER" root; do
        grep -qx "$u" <<<"$out" ||
            sacctmgr -i add user "$u" account="$ACCOUNT" defaultaccount="$ACCOUNT" cluster="$CLUSTER" >/dev/null
    done
}

ctld_up() { local out; out=$(scontrol ping) && [[ $out == *" is UP"* ]]; }

# The node is usable once slurmd has registered: idle, or busy with test jobs.  scontrol, not
# sinfo: the login node is in no partition once compute nodes take the jobs (tests/cluster/nodes.sh).
node_ready() {
    local out
    out=$(scontrol -o show node localhost) || return 1
    [[ $out =~ \ State=(IDLE|MIXED|ALLOCATED|COMPLETING)[+\ ] ]]
}

ensure_slurm_daemons() {
    if ((SLURM_CONF_CHANGED)); then
        # Node and partition definitions are only read at daemon start.
        if live_pid "$SLURMD_PID" slurmd >/dev/null || live_pid "$SLURMCTLD_PID" slurmctld >/dev/null; then
            say "slurm: slurm.conf changed, restarting slurmctld and slurmd"
            stop_daemon slurmd "$SLURMD_PID" slurmd
            stop_daemon slurmctld "$SLURMCTLD_PID" slurmctld
        fi
    fi
    if ! live_pid "$SLURMCTLD_PID" slurmctld >/dev/null; then
        slurmctld </dev/null >>"$LOGS/slurmctld.log" 2>&1 9>&- ||
            die "slurmctld failed to start (see $LOGS/slurmctld.log)"
        wait_for 30 ctld_up || die "slurmctld does not answer (see $LOGS/slurmctld.log)"
        say "slurmctld: started"
    fi
    if ! live_pid "$SLURMD_PID" slurmd >/dev/null; then
        # -N localhost: the node's name in slurm.conf, whatever the machine is called.
        slurmd -N localhost </dev/null >>"$LOGS/slurmd.log" 2>&1 9>&- ||
            die "slurmd failed to start (see $LOGS/slurmd.log)"
        say "slurmd: started"
    fi
    wait_for 60 node_ready || die "node 'localhost' is not idle: $(sinfo -h -N -o '%T %E' 2>&1 | head -n1)" \
        "(see $LOGS/slurmd.log and $LOGS/slurmctld.log)"
}

# ----------------------------------------------------------------------------- lmod

# hello/<version>: a modulefile plus the tiny program it puts on PATH.
write_hello() {
    local v=$1
    install -d -m 0755 "$APPS/hello/$v/bin"
    write_file "$APPS/hello/$v/bin/hello" 0755 root:root <<EOF
#!/bin/sh
echo "hello $v"
EOF
    write_file "$MODULEPATH_DIR/hello/$v.lua" 0644 root:root <<EOF
-- $MARKER
whatis("Name: hello")
whatis("Version: $v")
whatis("Description: Prints a greeting with its version (Cybershuttle test module)")
help([[
hello $v -- a test program that prints "hello $v".
Two versions exist so tests can tell which one a job loaded.
]])
prepend_path("PATH", "$APPS/hello/$v/bin")
setenv("HELLO_VERSION", "$v")
EOF
}

# A compiler module; gcc and intel are both in family "compiler", so loading one while
# the other is loaded makes Lmod swap them (or refuse, with LMOD_AUTO_SWAP=no).
write_compiler() {
    local name=$1 v=$2 desc=$3
    write_file "$MODULEPATH_DIR/$name/$v.lua" 0644 root:root <<EOF
-- $MARKER
whatis("Name: $name")
whatis("Version: $v")
whatis("Description: $desc (Cybershuttle test module, no real compiler)")
help([[
$desc $v -- stand-in module for tests.  Belongs to the "compiler" family: only one
compiler module can be loaded at a time.
]])
family("compiler")
setenv("CS_COMPILER", "$name/$v")
EOF
}

# pytorch/2.13: PyTorch (CPU) for /usr/bin/python3, the way HPC sites ship it: a module that
# prepends its library directory to PYTHONPATH.  Installed once (about 10 s, 760 MB); later
# starts only check the marker.  `import torch` needs nothing else but typing_extensions.
write_pytorch() {
    local v=2.13 lib=$APPS/pytorch/2.13/lib
    write_file "$MODULEPATH_DIR/pytorch/$v.lua" 0644 root:root <<EOF
-- $MARKER
whatis("Name: pytorch")
whatis("Version: $v")
whatis("Description: PyTorch $v (CPU build) for /usr/bin/python3 (Cybershuttle test module)")
help([[
pytorch $v -- the CPU build of PyTorch, importable by /usr/bin/python3 once loaded.
]])
prepend_path("PYTHONPATH", "$lib")
EOF
    [[ -e $lib/.installed ]] && return
    [[ -f $TORCH_WHEEL ]] ||
        die "the pytorch/$v module needs the PyTorch wheel $TORCH_WHEEL, which is missing" \
            "(set CS_TORCH_WHEEL to a torch 2.13 CPU wheel for Python 3.11)"
    say "installing PyTorch $v for the pytorch/$v module into $lib"
    rm -rf -- "$lib.partial"
    /usr/bin/python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
        --target "$lib.partial" "$TORCH_WHEEL" typing_extensions ||
        die "installing $TORCH_WHEEL for the pytorch/$v module failed (see pip's output above)"
    chmod -R a+rX -- "$lib.partial"
    rm -rf -- "$lib"
    mv -- "$lib.partial" "$lib"
    touch -- "$lib/.installed"
}

ensure_modules() {
    install -d -m 0755 "$MODULEPATH_DIR" "$MODULEPATH_DIR/hello" "$MODULEPATH_DIR/gcc" \
        "$MODULEPATH_DIR/intel" "$MODULEPATH_DIR/pytorch" "$APPS" "$APPS/pytorch/2.13"
    write_hello 1.0
    write_hello 2.0
    # Mark the default explicitly (Lmod would pick the highest version anyway).
    write_file "$MODULEPATH_DIR/hello/.modulerc.lua" 0644 root:root <<EOF
-- $MARKER
module_version("hello/2.0", "default")
EOF
    write_compiler gcc 12 "GNU Compiler Collection"
    write_compiler intel 2024 "Intel oneAPI compilers"
    write_pytorch

    # Lmod's `module` exists only in login shells (Debian's /etc/profile.d/lmod.sh); add
    # our tree to MODULEPATH there, once, whatever order the profile.d files run in.
    write_file "$PROFILE_SNIPPET" 0644 root:root <<EOF
$MARKER
# Makes the test cluster's sample modulefiles visible to \`module avail\` in login shells.
case ":\${MODULEPATH:-}:" in
  *":$MODULEPATH_DIR:"*) ;;
  *) export MODULEPATH="\${MODULEPATH:+\$MODULEPATH:}$MODULEPATH_DIR" ;;
esac
EOF
}

# ----------------------------------------------------------------------------- env file

write_env_file() {
    {
        printf 'export %s=%q\n' \
            CS_CLUSTER_DIR "$STATE" \
            CS_TEST_HOST 127.0.0.1 \
            CS_TEST_PORT "$PORT" \
            CS_TEST_NO_UNIX_PORT "$NO_UNIX_PORT" \
            CS_TEST_USER "$TEST_USER" \
            CS_TEST_KEY "$KEYS/$TEST_USER" \
            CS_TEST_KNOWN_HOSTS "$KNOWN_HOSTS" \
            CS_TEST_OTHER_USER "$OTHER_USER" \
            CS_TEST_OTHER_KEY "$KEYS/$OTHER_USER" \
            CS_TEST_SLURM_PARTITION debug \
            CS_TEST_SLURM_ACCOUNT "$ACCOUNT" \
            CS_TEST_MODULEPATH "$MODULEPATH_DIR"
        site_env
        hub_env
        conda_env
        nodes_env
    } | write_file "$ENV_FILE" 0644 root:root
}

# ----------------------------------------------------------------------------- commands

cmd_start() {
    need_root start
    local t0=$SECONDS
    take_lock
    install -d -m 0755 "$RUN" "$LOGS"
    install -d -m 0700 "$KEYS"

    ensure_packages
    ensure_node_network
    ensure_user "$TEST_USER"
    ensure_user "$OTHER_USER"
    ensure_hub_passwords
    ensure_sshd
    ensure_modules
    ensure_munge
    ensure_mariadb
    write_slurm_configs
    ensure_db_account
    # slurmdbd before slurmctld: slurmctld registers the cluster with it at start-up and
    # otherwise queues accounting records until it can reach it.
    ensure_slurmdbd
    ensure_accounting
    ensure_login_slurmd_paths
    ensure_slurm_daemons
    ensure_nodes
    ensure_site_cli
    ensure_conda_channel
    ensure_postgres
    write_env_file
    say "ready in $((SECONDS - t0)) s (eval \"\$(bash $0 env)\" for the connection settings)"
}

no_jobs_left() { local out; out=$(squeue -h -t PD,R,CG,S -o '%A') && [[ -z $out ]]; }

cmd_stop() {
    need_root stop
    take_lock
    local ids
    # Cancel leftover jobs first, while slurmd can still deliver the signals; otherwise
    # their processes would outlive the cluster.
    if live_pid "$SLURMCTLD_PID" slurmctld >/dev/null && live_pid "$SLURMD_PID" slurmd >/dev/null; then
        ids=$(squeue -h -o '%A' 2>/dev/null || true)
        if [[ -n $ids ]]; then
            say "cancelling jobs: $(tr '\n' ' ' <<<"$ids")"
            # shellcheck disable=SC2086
            scancel $ids 2>/dev/null || true
            wait_for 15 no_jobs_left ||
                say "some jobs are still running"
        fi
    fi
    # Reverse order of start.
    stop_nodes
    stop_daemon slurmd "$SLURMD_PID" slurmd
    stop_daemon slurmctld "$SLURMCTLD_PID" slurmctld
    stop_daemon slurmdbd "$SLURMDBD_PID" slurmdbd
    stop_daemon mariadb "$MARIADB_PID" mariadbd
    stop_daemon munge "$MUNGED_PID" munged
    stop_daemon sshd "$SSHD_PID" sshd
    stop_postgres
}

cmd_status() {
    local all=0 pid label file name
    while read -r label file name; do
        if pid=$(live_pid "$file" "$name"); then
            printf '%-10s running (pid %s)\n' "$label" "$pid"
        elif [[ $label == munge ]] && munge_works; then
            printf '%-10s running (not started by cluster.sh)\n' "$label"
        else
            printf '%-10s stopped\n' "$label"
            all=1
        fi
    done <<EOF
sshd $SSHD_PID sshd
munge $MUNGED_PID munged
mariadb $MARIADB_PID mariadbd
slurmdbd $SLURMDBD_PID slurmdbd
slurmctld $SLURMCTLD_PID slurmctld
slurmd $SLURMD_PID slurmd
postgres $PG_PID postgres
$(nodes_status)
EOF
    return "$all"
}

cmd_env() {
    [[ -r $ENV_FILE ]] ||
        die "no test cluster in $STATE (never started?): run 'sudo bash $0 start' first"
    cat -- "$ENV_FILE"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    exec) shift; cmd_exec "$@" ;;
    node-ssh) shift; cmd_node_ssh "$@" ;;
    *)
        echo "usage: $0 start|stop|status|env|exec NODE CMD...|node-ssh on|off" >&2
        exit 2
        ;;
esac
