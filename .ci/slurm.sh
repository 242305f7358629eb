#!/usr/bin/env bash
# A real single-node Slurm for CI (as root, no systemd needed): `.ci/slurm.sh start`, then
# `pytest tests/test_slurm.py`, then `.ci/slurm.sh stop`.
#   start   install slurm-wlm and munge with apt-get (skipped when present), write /etc/slurm/slurm.conf
#           for this host (its name, nproc CPUs, RealMemory from its memory), start munged, slurmctld and
#           slurmd in the foreground under setsid, record their PIDs in $PIDFILE, wait for the node to be idle.
#           A second `start` while they run does nothing.
#   stop    end exactly the recorded PIDs (TERM, then KILL after 20 s), never by name; remove $PIDFILE and the
#           slurm.conf that start wrote.
#   status  print the recorded PIDs and `sinfo`.
# No accounting database: jobs are seen with `squeue --states=all`, which keeps a finished job for MinJobAge
# seconds (1 day here); the Slurm profile's status command is squeue for that reason (see
# workflow/profiles/slurm/README.md).
set -euo pipefail

PIDFILE=${DIFFSCALE_SLURM_PIDFILE:-/run/diffscale-slurm.pids}
CONF=/etc/slurm/slurm.conf
LOGDIR=/var/log/slurm

die() { echo "slurm.sh: $*" >&2; exit 1; }

alive() {  # alive PID NAME: the process PID runs the program NAME
    [ -r "/proc/$1/comm" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]
}

recorded_alive() {  # every recorded daemon is still running
    [ -s "$PIDFILE" ] || return 1
    local name pid
    while read -r name pid; do alive "$pid" "$name" || return 1; done <"$PIDFILE"
}

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    [ "$(id -u)" = 0 ] || die "installing Slurm needs root (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

write_conf() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    # RealMemory must not exceed what slurmd detects, or the node is drained ("Low RealMemory"): 90% of it.
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGDIR"
    cat >"$CONF" <<EOF
# Written by diffscale's .ci/slurm.sh: a single-node Slurm for CI, no accounting database.
ClusterName=ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=86400
ReturnToService=2
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    id munge >/dev/null 2>&1 || die "no munge user: is the munge package installed?"
    mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    # setpriv execs (no fork), so $! is munged itself.
    setsid setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
        >>"$LOGDIR/munged.out" 2>&1 </dev/null &
    echo "munged $!" >>"$PIDFILE"
    for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && return; sleep 0.2; done
    die "munged did not create its socket; see $LOGDIR/munged.out"
}

start() {
    if recorded_alive; then
        echo "slurm.sh: already running ($(tr '\n' ' ' <"$PIDFILE"))"
        return
    fi
    [ ! -s "$PIDFILE" ] || die "$PIDFILE names daemons that are gone: run '$0 stop' first"
    install
    write_conf
    mkdir -p "$(dirname "$PIDFILE")"
    : >"$PIDFILE"
    start_munge
    # -D: stay in the foreground, so $! is the daemon; -c (slurmctld): forget jobs of an earlier CI run.
    setsid /usr/sbin/slurmctld -D -c >>"$LOGDIR/slurmctld.out" 2>&1 </dev/null &
    echo "slurmctld $!" >>"$PIDFILE"
    setsid /usr/sbin/slurmd -D >>"$LOGDIR/slurmd.out" 2>&1 </dev/null &
    echo "slurmd $!" >>"$PIDFILE"
    local state=""
    for _ in $(seq 60); do
        recorded_alive || { tail -n 20 "$LOGDIR"/*.log >&2 || true; die "a daemon exited; see $LOGDIR"; }
        state=$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)
        [ "$state" = idle ] && break
        sleep 1
    done
    [ "$state" = idle ] || { tail -n 20 "$LOGDIR"/*.log >&2 || true; die "node not idle after 60 s (state: '$state')"; }
    echo "slurm.sh: started ($(tr '\n' ' ' <"$PIDFILE")); $(sinfo -h -o '%P %a %D %T %N')"
}

stop() {
    [ -s "$PIDFILE" ] || { echo "slurm.sh: nothing recorded in $PIDFILE"; return; }
    local name pid pids=()
    # Reverse order: slurmd, slurmctld, then munged (which the other two need to shut down cleanly).
    while read -r name pid; do
        if alive "$pid" "$name"; then pids=("$pid" "${pids[@]}"); fi
    done <"$PIDFILE"
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
        [ ! -d "/proc/$pid" ] || kill -KILL "$pid" 2>/dev/null || true
    done
    rm -f "$PIDFILE"
    # Without a controller, `scontrol show config` retries for ~9 s, and snakemake-executor-plugin-slurm runs
    # it at every `snakemake` start: remove the configuration written by `start`, so that it fails at once.
    if head -n 1 "$CONF" 2>/dev/null | grep -q "^# Written by diffscale's .ci/slurm.sh"; then rm -f "$CONF"; fi
    echo "slurm.sh: stopped ${pids[*]:-nothing (no recorded daemon was running)}"
}

status() {
    [ -s "$PIDFILE" ] && cat "$PIDFILE" || echo "slurm.sh: nothing recorded in $PIDFILE"
    sinfo || true
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
