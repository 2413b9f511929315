#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for tests/slurm/ and for trying jobs/ for real:
#   tools/slurm_local.sh start   install Debian's slurmctld, slurmd, slurm-client and munge if missing
#                                (apt-get; needs root), write a slurm.conf for this node, start munged,
#                                slurmctld and slurmd, wait until the node takes jobs; prints
#                                `export SLURM_CONF=...` (the clients sbatch/srun/squeue need it)
#   tools/slurm_local.sh stop    stop every daemon that `start` started (by the pids it recorded)
#   tools/slurm_local.sh check   exit 0 if `start` can work here, else print why on one line, exit 1
#   tools/slurm_local.sh status  exit 0 if the daemons `start` started are running
# Everything lives in HPCGAN_SLURM_DIR (default /tmp/hpcgan-slurm): slurm.conf, state, spool, logs,
# pid files. The node is sized to this machine's cores (slurmd -C); ProctrackType=proctrack/linuxproc
# and TaskPlugin=task/none need no cgroups, MpiDefault=none (jobs ask srun --mpi=pmi2 for MPICH).
# A munged or Slurm daemon that was already running is left alone and not stopped.
set -euo pipefail
dir="${HPCGAN_SLURM_DIR:-/tmp/hpcgan-slurm}"
conf="$dir/slurm.conf"
packages=(slurmctld slurmd slurm-client munge)

why_not() {  # prints why this machine cannot run the local cluster; nothing if it can
    if [[ "$(id -u)" != 0 ]]; then echo "not root (slurmd runs jobs as any user only as root)"
    elif ! command -v slurmctld >/dev/null && ! command -v apt-get >/dev/null; then
        echo "Slurm is not installed and there is no apt-get to install it"
    fi
}

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null && return 0
    echo "slurm_local: installing ${packages[*]} (apt-get)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >&2
}

write_conf() {
    local host node mem
    host="$(hostname -s)"
    # "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24151"
    node="$(slurmd -C | head -1)"
    mem="$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<< "$node")"
    # leave the OS some memory, or slurmd registers with less than the config says and drains itself
    node="${node/RealMemory=$mem/RealMemory=$(( mem * 9 / 10 ))}"
    mkdir -p "$dir/state" "$dir/spool" "$dir/log"
    cat > "$conf" <<EOF
# written by tools/slurm_local.sh
ClusterName=hpcgan-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start again after cred_expire + 1 s (default 120)
AuthInfo=cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=${HPCGAN_SLURMCTLD_PORT:-16817}
SlurmdPort=${HPCGAN_SLURMD_PORT:-16818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
JobRequeue=1
KillWait=5
MinJobAge=600
InactiveLimit=0
MailProg=/bin/true
SlurmdTimeout=60
$node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}

start_daemon() {  # start_daemon NAME PIDFILE CMD...: start unless our pid file names a live process
    local name="$1" pidfile="$2"; shift 2
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return 0; fi
    "$@" >>"$dir/log/$name.out" 2>&1 || { echo "slurm_local: $name did not start; see $dir/log/" >&2; return 1; }
}

start() {
    local reason; reason="$(why_not)"
    [[ -z "$reason" ]] || { echo "slurm_local: cannot start: $reason" >&2; exit 1; }
    install_packages
    mkdir -p "$dir/log"
    write_conf
    export SLURM_CONF="$conf"
    # munge: slurm authenticates through the default socket; reuse a munged that is already running
    if ! munge -n </dev/null >/dev/null 2>&1; then
        [[ -s /etc/munge/munge.key ]] || { mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f; }
        mkdir -p /run/munge && chown munge:munge /run/munge /etc/munge/munge.key 2>/dev/null || true
        runuser -u munge -- /usr/sbin/munged
        pgrep -u munge -n -x munged > "$dir/munged.pid"
    fi
    start_daemon slurmctld "$dir/slurmctld.pid" slurmctld -f "$conf"
    start_daemon slurmd "$dir/slurmd.pid" slurmd -f "$conf"
    local i
    for i in $(seq 60); do
        if sinfo -h -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; then
            echo "export SLURM_CONF=$conf"; return 0
        fi
        sleep 0.5
    done
    echo "slurm_local: the node did not come up in 30 s:" >&2; sinfo -N -l >&2 || true
    tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    exit 1
}

stop() {
    local name pid
    export SLURM_CONF="$conf"
    # jobs first, so that no step outlives the daemons
    if [[ -f "$dir/slurmctld.pid" ]] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
        scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    fi
    for name in slurmd slurmctld munged; do
        [[ -f "$dir/$name.pid" ]] || continue
        pid="$(cat "$dir/$name.pid")"
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        fi
        rm -f "$dir/$name.pid"
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) for name in slurmctld slurmd; do
                [[ -f "$dir/$name.pid" ]] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null || exit 1
            done ;;
    check) reason="$(why_not)"; [[ -z "$reason" ]] || { echo "$reason"; exit 1; } ;;
    *) echo "usage: $0 start|stop|status|check" >&2; exit 2 ;;
esac
