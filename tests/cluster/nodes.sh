# Sourced by cluster.sh: the compute nodes node1 and node2 (issue 14).
#
# A real cluster is a login node and compute nodes behind it.  Here each compute node is:
#   * a network namespace (cstest-nodeN) with its own loopback and one address on a bridge
#     (csbr0) that only the login namespace and the nodes share -- no default route, so nothing
#     on a node reaches anything but the login node and the other node;
#   * a UTS namespace kept in a file ($NODES_DIR/nodeN/uts) whose hostname is nodeN, so
#     `hostname` in a job, an SSH session or `cluster.sh exec` says which node it is on;
#   * its own slurmd (`slurmd -N nodeN`) and sshd (port 22 on the node's address), both entered
#     into those two namespaces.  Everything else is shared, as a cluster's shared filesystem
#     is: homes, the Lmod tree, /etc/slurm, munge's socket, the state directory.
# SSH to a node is allowed only while the user has a job there: the node sshd runs PAM with
# pam_slurm_adopt (Debian's libpam-slurm-adopt) in its own service, so the login sshd's
# configuration is untouched.  Node names resolve through /etc/hosts lines marked with
# $NODE_HOSTS_MARK; the nodes' host keys are in the tests' known_hosts file.
#
# Slurm: nodes declare 16 CPUs and 128 GiB (SlurmdParameters=config_overrides: the real
# setup files ask for that much) and node2 two `a100` GPUs as GRES backed by character
# devices made here (never opened: only the scheduling and CUDA_VISIBLE_DEVICES are real).
# Layout (CS_NODES_LAYOUT): `nodes` (the default, as on a real site): partition `debug` is the two
# nodes and `short` node1 alone (no GPUs), so no job runs on the login node; `split` keeps `debug`
# and `short` on the login node and puts the nodes in partition `nodes` (the login node's slurmd is
# kept either way).
#
# Variables read: CS_NODE_NET (first three octets of the bridge's /24, default 10.77.14),
# CS_NODE_SSH (on = nodes run sshd, off = a site that forbids SSH to compute nodes; 1/0 too),
# CS_NODES_LAYOUT (split|nodes).  The last two are remembered in $NODES_DIR/settings, so a
# plain `start` keeps what the previous one chose.
#
# Relies on cluster.sh's helpers (say, die, live_pid, wait_for, write_file, check_ours,
# stop_daemon) and settings (STATE, RUN, LOGS, SLURM_DIR, TEST_USER, OTHER_USER, MARKER).

PACKAGES+=(libpam-slurm-adopt iproute2)

NODES=(node1 node2)
NODE_NET=${CS_NODE_NET:-10.77.14}
NODE_BRIDGE=csbr0
NODE_LOGIN_ADDR=$NODE_NET.1
NODES_DIR=$STATE/nodes
NODE_SETTINGS=$NODES_DIR/settings
# The PAM service of the node sshd is its program name (OpenSSH's default), so a link named
# like this gives the nodes a PAM stack of their own (/etc/pam.d/$NODE_PAM_SERVICE).
NODE_PAM_SERVICE=sshd-csnode
NODE_SSHD=$NODES_DIR/sbin/$NODE_PAM_SERVICE
NODE_PAM_FILE=/etc/pam.d/$NODE_PAM_SERVICE
GRES_CONF=/etc/slurm/gres.conf
GPU_DEVS=$NODES_DIR/dev
NODE_HOSTS_MARK="# cybershuttle-test-node"
NODE_CPUS=16
NODE_MEM_MB=131072
GPU_NODE=node2
# Nodes have no route off the cluster network; pip in a job there goes through this HTTP proxy on
# the login node (node_proxy.py), which jobs find in https_proxy & co. (the TaskProlog below).
NODE_PROXY_PORT=3128
NODE_PROXY_PID=$RUN/node-proxy.pid
NODE_PROXY_SRC=$(dirname -- "${BASH_SOURCE[0]}")/node_proxy.py
TASK_PROLOG=$NODES_DIR/task_prolog.sh
GPU_TYPE=a100
GPU_COUNT=2

# Settings remembered from the previous start unless given now.
# shellcheck disable=SC1090
[[ -r $NODE_SETTINGS ]] && source "$NODE_SETTINGS"
# on/off as 1/0.
node_ssh_flag() {
    case $1 in
        1 | on | yes) echo 1 ;;
        0 | off | no) echo 0 ;;
        *) die "node SSH must be 'on' (nodes run sshd) or 'off' (a site without SSH to nodes), not '$1'" ;;
    esac
}
NODE_SSH=$(node_ssh_flag "${CS_NODE_SSH:-${SAVED_NODE_SSH:-1}}")
NODES_LAYOUT=${CS_NODES_LAYOUT:-${SAVED_NODES_LAYOUT:-nodes}}
[[ $NODES_LAYOUT =~ ^(split|nodes)$ ]] ||
    die "CS_NODES_LAYOUT must be 'split' (debug on the login node, nodes in 'nodes') or 'nodes' (debug = node1+node2), not '$NODES_LAYOUT'"

node_index() {
    local i
    for i in "${!NODES[@]}"; do
        if [[ ${NODES[i]} == "$1" ]]; then echo $((i + 1)); return 0; fi
    done
    return 1
}
node_addr() { echo "$NODE_NET.$((10 + $(node_index "$1")))"; }
node_netns() { echo "cstest-$1"; }
node_uts() { echo "$NODES_DIR/$1/uts"; }
node_sshd_pid() { echo "$NODES_DIR/$1/sshd.pid"; }
node_slurmd_pid() { echo "$RUN/slurmd-$1.pid"; }   # SlurmdPidFile's %n
known_node() { node_index "$1" >/dev/null || die "no node '$1' (nodes: ${NODES[*]})"; }

# Run "$@" inside NODE's network and UTS namespaces (the same filesystem and users).
in_node() {
    local node=$1; shift
    nsenter --net="/run/netns/$(node_netns "$node")" --uts="$(node_uts "$node")" -- "$@"
}

# ----------------------------------------------------------------------------- network

node_uts_ready() { [[ $(nsenter --uts="$(node_uts "$1")" -- hostname 2>/dev/null) == "$1" ]]; }

# The bridge (login side), and per node: namespace, veth pair, address, hostname.  Runs before
# any Slurm command: slurm.conf names the controller by the bridge address.
ensure_node_network() {
    local node ns addr host_if node_if uts
    install -d -m 0755 "$NODES_DIR"
    # Remembered first: a start that fails later still keeps what was asked for.
    save_node_settings
    if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
        ip link add "$NODE_BRIDGE" type bridge || die "cannot create the bridge $NODE_BRIDGE"
    fi
    ip -4 addr show dev "$NODE_BRIDGE" | grep -qF " $NODE_LOGIN_ADDR/24 " ||
        ip addr add "$NODE_LOGIN_ADDR/24" dev "$NODE_BRIDGE"
    ip link set "$NODE_BRIDGE" up
    for node in "${NODES[@]}"; do
        ns=$(node_netns "$node") addr=$(node_addr "$node")
        host_if="csv-$node" node_if="eth0"
        install -d -m 0755 "$NODES_DIR/$node"
        [[ -e /run/netns/$ns ]] || ip netns add "$ns" || die "cannot create network namespace $ns"
        if ! ip link show "$host_if" >/dev/null 2>&1; then
            ip link add "$host_if" type veth peer name "$node_if" netns "$ns" ||
                die "cannot create the veth pair for $node"
        fi
        ip link set "$host_if" master "$NODE_BRIDGE"
        ip link set "$host_if" up
        ip -n "$ns" link set lo up
        ip -n "$ns" -4 addr show dev "$node_if" | grep -qF " $addr/24 " ||
            ip -n "$ns" addr add "$addr/24" dev "$node_if"
        ip -n "$ns" link set "$node_if" up
        # A UTS namespace that outlives its processes: a bind mount of /proc/PID/ns/uts.
        uts=$(node_uts "$node")
        if ! node_uts_ready "$node"; then
            umount "$uts" 2>/dev/null || true
            touch "$uts"
            unshare --uts="$uts" hostname "$node" || die "cannot create the UTS namespace of $node"
        fi
    done
    ensure_node_hosts
}

# node1/node2 resolve on every namespace (they share /etc/hosts).  Edited in place, not
# replaced: /etc/hosts is often a bind mount in containers.
ensure_node_hosts() {
    local want node cur
    want=$(for node in "${NODES[@]}"; do printf '%s %s %s\n' "$(node_addr "$node")" "$node" "$NODE_HOSTS_MARK"; done)
    cur=$(grep -F -- "$NODE_HOSTS_MARK" /etc/hosts || true)
    [[ $cur == "$want" ]] && return 0
    remove_node_hosts
    printf '%s\n' "$want" >>/etc/hosts
}

remove_node_hosts() {
    local keep
    grep -qF -- "$NODE_HOSTS_MARK" /etc/hosts || return 0
    keep=$(grep -vF -- "$NODE_HOSTS_MARK" /etc/hosts || true)
    printf '%s\n' "$keep" >/etc/hosts
}

# ----------------------------------------------------------------------------- ssh

# One host key per node, made once; printed as known_hosts lines (name and address), which
# ensure_sshd puts in the tests' known_hosts file next to the login node's.
node_known_hosts() {
    local node key kt kb
    for node in "${NODES[@]}"; do
        key=$NODES_DIR/$node/ssh_host_ed25519_key
        install -d -m 0755 "$NODES_DIR/$node"
        if [[ ! -s $key || ! -s $key.pub ]]; then
            rm -f -- "$key" "$key.pub"
            ssh-keygen -q -t ed25519 -N '' -C "cybershuttle-test-$node" -f "$key"
        fi
        read -r kt kb _ <"$key.pub"
        printf '%s,%s %s %s\n' "$node" "$(node_addr "$node")" "$kt" "$kb"
        printf '[%s]:%s,[%s]:%s %s %s\n' "$node" "$NO_UNIX_PORT" "$(node_addr "$node")" "$NO_UNIX_PORT" "$kt" "$kb"
    done
}

write_node_pam() {
    check_ours "$NODE_PAM_FILE"
    write_file "$NODE_PAM_FILE" 0644 root:root <<EOF
$MARKER
# PAM stack of the test cluster's compute-node sshd (tests/cluster/nodes.sh).  Key logins
# only: no auth modules run.  pam_slurm_adopt lets a user in only while they have a job on
# this node (action_no_jobs=deny) and adopts the session into that job's extern step.
# service=: the module acts only for the services named (default "sshd").  action_unknown:
# with several jobs here it would pick one by cgroup age; there are no cgroups: let them in.
auth       required   pam_deny.so
account    required   pam_unix.so
account    required   pam_slurm_adopt.so service=$NODE_PAM_SERVICE action_no_jobs=deny action_unknown=allow action_adopt_failure=allow
session    required   pam_unix.so
EOF
}

ensure_node_sshd() {
    local node=$1 dir=$NODES_DIR/$1 pidf cfg changed
    pidf=$(node_sshd_pid "$node") cfg=$dir/sshd_config
    write_file "$cfg" 0600 root:root <<EOF
$MARKER
# sshd of compute node $node (inside its network namespace; port 22 on its own addresses, and
# $NO_UNIX_PORT: the same sshd as at a site whose nodes forbid forwarding to Unix sockets).
Port 22
Port $NO_UNIX_PORT
ListenAddress 0.0.0.0
HostKey $dir/ssh_host_ed25519_key
PidFile $pidf
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# PAM for pam_slurm_adopt (service $NODE_PAM_SERVICE, see $NODE_PAM_FILE).
UsePAM yes
$(sshd_common_settings)
Match LocalPort $NO_UNIX_PORT
    AllowStreamLocalForwarding no
EOF
    changed=$FILE_CHANGED
    if live_pid "$pidf" "$NODE_PAM_SERVICE" >/dev/null; then
        ((changed)) || return 0
        stop_daemon "$node sshd" "$pidf" "$NODE_PAM_SERVICE"
    fi
    "$NODE_SSHD" -t -f "$cfg" || die "sshd rejected $cfg"
    in_node "$node" "$NODE_SSHD" -f "$cfg" -E "$LOGS/sshd-$node.log" </dev/null >>"$LOGS/sshd-$node.stderr" 2>&1 9>&- ||
        die "$node: sshd failed to start (see $LOGS/sshd-$node.stderr and $LOGS/sshd-$node.log)"
    wait_for 10 live_pid "$pidf" "$NODE_PAM_SERVICE" || die "$node: sshd wrote no pid file (see $LOGS/sshd-$node.log)"
    say "$node: sshd listening on $(node_addr "$node"):22"
}

# ----------------------------------------------------------------------------- proxy

# The login node's HTTP proxy for jobs on the nodes, run as nobody (a copy of the script every
# user can read: the checkout may not be), restarted when the script changes.
ensure_node_proxy() {
    local script=$NODES_DIR/node_proxy.py changed
    write_file "$script" 0644 root:root <"$NODE_PROXY_SRC"
    changed=$FILE_CHANGED
    if live_pid "$NODE_PROXY_PID" python3 >/dev/null; then
        ((changed)) || return 0
        stop_daemon "node proxy" "$NODE_PROXY_PID" python3
    fi
    setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all \
        /usr/bin/python3 "$script" "$NODE_LOGIN_ADDR" "$NODE_PROXY_PORT" </dev/null >>"$LOGS/node-proxy.log" 2>&1 9>&- &
    echo $! >"$NODE_PROXY_PID"
    disown
    wait_for 10 bash -c "exec 3<>/dev/tcp/$NODE_LOGIN_ADDR/$NODE_PROXY_PORT" ||
        die "the nodes' HTTP proxy does not listen on $NODE_LOGIN_ADDR:$NODE_PROXY_PORT (see $LOGS/node-proxy.log)"
    say "node proxy: listening on $NODE_LOGIN_ADDR:$NODE_PROXY_PORT"
}

# Every task (a batch script too) starts with the proxy in its environment; cluster-internal
# addresses stay direct.
write_task_prolog() {
    local proxy=http://$NODE_LOGIN_ADDR:$NODE_PROXY_PORT
    local direct="localhost,127.0.0.1,$NODE_NET.0/24,$(IFS=,; echo "${NODES[*]}")"
    install -d -m 0755 "$NODES_DIR"
    write_file "$TASK_PROLOG" 0755 root:root <<EOF
#!/bin/sh
$MARKER
# Slurm's TaskProlog: each "export" line it prints is set in the task's environment.
echo "export http_proxy=$proxy"
echo "export https_proxy=$proxy"
echo "export HTTP_PROXY=$proxy"
echo "export HTTPS_PROXY=$proxy"
echo "export no_proxy=$direct"
echo "export NO_PROXY=$direct"
EOF
}

# ----------------------------------------------------------------------------- slurm

# slurm.conf lines for the nodes and partitions (cluster.sh's write_slurm_configs includes
# them).  $1/$2: the login node's CPUs and memory.
slurm_nodes_conf() {
    local cpus=$1 mem_mb=$2 node gres node_parts
    cat <<EOF
# Nodes declare what the real setup files ask for, not what this machine has.
SlurmdParameters=config_overrides
GresTypes=gpu
# The nodes' HTTP proxy (see write_task_prolog).
TaskProlog=$TASK_PROLOG
# Every job gets an "extern" step on each of its nodes: pam_slurm_adopt counts only those
# when it decides whether a user has a job on the node it is asked to let them into.
PrologFlags=contain
EOF
    for node in "${NODES[@]}"; do
        gres=
        [[ $node == "$GPU_NODE" ]] && gres=" Gres=gpu:$GPU_TYPE:$GPU_COUNT"
        printf 'NodeName=%s NodeAddr=%s CPUs=%s RealMemory=%s%s State=UNKNOWN\n' \
            "$node" "$(node_addr "$node")" "$NODE_CPUS" "$NODE_MEM_MB" "$gres"
    done
    # The login node after the compute nodes: Slurm 22.05 resolves any name to a lone node
    # called "localhost", so a node defined after it reads as a duplicate of it.
    echo "NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN"
    node_parts=$(IFS=,; echo "${NODES[*]}")
    if [[ $NODES_LAYOUT == nodes ]]; then
        # As on a real site: jobs run on compute nodes only, never on the login node.  `short` is
        # node1 alone, a partition without GPUs (requests for GPUs there are refused).
        cat <<EOF
PartitionName=debug Nodes=$node_parts Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=${NODES[0]} MaxTime=30 State=UP
EOF
    else
        cat <<EOF
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=localhost MaxTime=30 State=UP
PartitionName=nodes Nodes=$node_parts MaxTime=INFINITE State=UP
EOF
    fi
}

# Character devices standing in for node2's GPUs (major 195 is NVIDIA's), and gres.conf.
write_gres_conf() {
    local i
    install -d -m 0755 "$GPU_DEVS"
    for ((i = 0; i < GPU_COUNT; i++)); do
        [[ -c $GPU_DEVS/nvidia$i ]] || mknod -m 0666 "$GPU_DEVS/nvidia$i" c 195 "$i" ||
            die "cannot make the GPU device file $GPU_DEVS/nvidia$i"
    done
    check_ours "$GRES_CONF"
    write_file "$GRES_CONF" 0644 root:root <<EOF
$MARKER
AutoDetect=off
NodeName=$GPU_NODE Name=gpu Type=$GPU_TYPE File=$GPU_DEVS/nvidia[0-$((GPU_COUNT - 1))]
EOF
    GRES_CONF_CHANGED=$FILE_CHANGED
}

# The login node's slurmd keeps the spool directory and log it had before nodes existed
# (its running jobs' step sockets live in the spool): the %n paths of slurm.conf point there.
# Its pid file moves (slurmd replaces a link with a file): a running one's is renamed.
ensure_login_slurmd_paths() {
    [[ -L $SLURM_DIR/d-localhost ]] || ln -sfn d "$SLURM_DIR/d-localhost"
    [[ -L $LOGS/slurmd-localhost.log ]] || ln -sfn slurmd.log "$LOGS/slurmd-localhost.log"
    if [[ -f $RUN/slurmd.pid && ! -e $SLURMD_PID ]]; then mv -f -- "$RUN/slurmd.pid" "$SLURMD_PID"; fi
}

node_ready_in_slurm() {
    local state
    state=$(sinfo -h -N -n "$1" -o '%T') || return 1
    state=${state%%$'\n'*}
    [[ $state =~ ^(idle|mixed|allocated|completing)$ ]]
}

ensure_node_slurmd() {
    local node=$1 pidf
    pidf=$(node_slurmd_pid "$node")
    install -d -m 0755 "$SLURM_DIR/d-$node"
    if ((SLURM_CONF_CHANGED || GRES_CONF_CHANGED)) && live_pid "$pidf" slurmd >/dev/null; then
        stop_daemon "$node slurmd" "$pidf" slurmd
    fi
    if ! live_pid "$pidf" slurmd >/dev/null; then
        in_node "$node" slurmd -N "$node" </dev/null >>"$LOGS/slurmd-$node.log" 2>&1 9>&- ||
            die "$node: slurmd failed to start (see $LOGS/slurmd-$node.log)"
        say "$node: slurmd started"
    fi
}

# ----------------------------------------------------------------------------- commands

save_node_settings() {
    printf 'SAVED_NODE_SSH=%s\nSAVED_NODES_LAYOUT=%s\n' "$NODE_SSH" "$NODES_LAYOUT" |
        write_file "$NODE_SETTINGS" 0644 root:root
}

# sshd on every node, or on none (CS_NODE_SSH / `cluster.sh node-ssh on|off`).
ensure_node_ssh() {
    local node
    install -d -m 0755 "$NODES_DIR/sbin"
    ln -sfn /usr/sbin/sshd "$NODE_SSHD"
    write_node_pam
    for node in "${NODES[@]}"; do
        if ((NODE_SSH)); then
            ensure_node_sshd "$node"
        else
            stop_daemon "$node sshd" "$(node_sshd_pid "$node")" "$NODE_PAM_SERVICE"
        fi
    done
}

ensure_nodes() {
    local node
    ensure_node_proxy
    for node in "${NODES[@]}"; do
        ensure_node_slurmd "$node"
    done
    ensure_node_ssh
    for node in "${NODES[@]}"; do
        wait_for 60 node_ready_in_slurm "$node" ||
            die "node '$node' is not idle: $(sinfo -h -N -n "$node" -o '%T %E' 2>&1 | head -n1)" \
                "(see $LOGS/slurmd-$node.log and $LOGS/slurmctld.log)"
    done
}

# Before the login node's daemons stop: their jobs are cancelled already.
stop_nodes() {
    local node ns
    for node in "${NODES[@]}"; do
        stop_daemon "$node sshd" "$(node_sshd_pid "$node")" "$NODE_PAM_SERVICE"
        stop_daemon "$node slurmd" "$(node_slurmd_pid "$node")" slurmd
    done
    for node in "${NODES[@]}"; do
        ns=$(node_netns "$node")
        [[ -e /run/netns/$ns ]] && ip netns del "$ns"
        umount "$(node_uts "$node")" 2>/dev/null || true
        ip link del "csv-$node" 2>/dev/null || true
    done
    stop_daemon "node proxy" "$NODE_PROXY_PID" python3
    ip link del "$NODE_BRIDGE" 2>/dev/null || true
    remove_node_hosts
    say "nodes: namespaces, bridge and /etc/hosts lines removed"
}

nodes_status() {
    local node
    printf 'node-proxy %s python3\n' "$NODE_PROXY_PID"
    for node in "${NODES[@]}"; do
        printf '%s %s slurmd\n' "$node-slurmd" "$(node_slurmd_pid "$node")"
        if ((NODE_SSH)); then printf '%s %s %s\n' "$node-sshd" "$(node_sshd_pid "$node")" "$NODE_PAM_SERVICE"; fi
    done
}

nodes_env() {
    local part=nodes
    [[ $NODES_LAYOUT == nodes ]] && part=debug
    printf 'export %s=%q\n' \
        CS_TEST_NODES "${NODES[*]}" \
        CS_TEST_NODE_ADDRS "$(for n in "${NODES[@]}"; do printf '%s ' "$(node_addr "$n")"; done | sed 's/ $//')" \
        CS_TEST_NODE_LOGIN_ADDR "$NODE_LOGIN_ADDR" \
        CS_TEST_NODE_PARTITION "$part" \
        CS_TEST_NODE_SSH "$( ((NODE_SSH)) && echo on || echo off)" \
        CS_TEST_GPU_NODE "$GPU_NODE" \
        CS_TEST_GPU_TYPE "$GPU_TYPE"
}

# cluster.sh node-ssh on|off: start or stop the nodes' sshd without a full start (remembered).
cmd_node_ssh() {
    need_root node-ssh
    [[ $# -eq 1 ]] || die "usage: cluster.sh node-ssh on|off"
    NODE_SSH=$(node_ssh_flag "$1")
    take_lock
    [[ -r $ENV_FILE ]] || die "no test cluster in $STATE: run 'sudo bash tests/cluster/cluster.sh start' first"
    save_node_settings
    ensure_node_ssh
    write_env_file
    say "SSH to the nodes is $1"
}

# cluster.sh exec NODE CMD...: a command inside NODE (its network, its hostname), as root.
cmd_exec() {
    need_root exec
    local node=${1:-}
    [[ -n $node && $# -ge 2 ]] || die "usage: cluster.sh exec NODE CMD... (nodes: ${NODES[*]})"
    known_node "$node"
    shift
    [[ -e /run/netns/$(node_netns "$node") ]] && node_uts_ready "$node" ||
        die "node $node is not up: run 'sudo bash tests/cluster/cluster.sh start' first"
    exec nsenter --net="/run/netns/$(node_netns "$node")" --uts="$(node_uts "$node")" -- "$@"
}
