#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the sweep tests and CI (Debian/Ubuntu, root).
#
#   bash scripts/slurm-local.sh start    # install slurm-wlm + munge if missing, start munged,
#                                        # slurmctld, slurmd; wait until the node is usable
#   bash scripts/slurm-local.sh status   # the daemons this script started, and sinfo
#   bash scripts/slurm-local.sh stop     # stop exactly the daemons this script started
#
# One partition `debug` (the default) with one node: this host, CPUs = nproc, RealMemory = the
# machine's memory minus a margin. No accounting (sacct is off): use squeue / scontrol.
# Credentials expire after 30 s (default 120 s), which is also how long a requeued job waits.
# The daemons run in the foreground of their own sessions; their PIDs are kept in
# $BRAINGAN_SLURM_STATE/pids (default /tmp/braingan-slurm/pids), logs in $BRAINGAN_SLURM_STATE/logs.
set -euo pipefail

STATE=${BRAINGAN_SLURM_STATE:-/tmp/braingan-slurm}
PIDS=$STATE/pids
LOGS=$STATE/logs
CONF=/etc/slurm/slurm.conf
MARK="# written by braingan scripts/slurm-local.sh"
DAEMONS=(munged slurmctld slurmd)  # start order; stopped in reverse
WAIT_S=${BRAINGAN_SLURM_WAIT_S:-60}

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "'$1' must run as root (it installs packages, writes /etc/slurm and starts daemons)"; }

# A process that exists and has not exited (a zombie waits for its parent and counts as gone).
running() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# PID of a daemon this script started, if that process is still alive and still that program.
alive_pid() {
    local f=$PIDS/$1.pid pid
    [ -f "$f" ] || return 1
    pid=$(cat "$f")
    [ -n "$pid" ] && running "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
    echo "$pid"
}

sinfo_ok() { command -v sinfo >/dev/null && timeout 10 sinfo -h >/dev/null 2>&1; }

# The node is usable: idle, mixed or allocated, and responding (no '*' or '~' suffix).
node_ready() { timeout 10 sinfo -h -N -o %t 2>/dev/null | grep -qxE 'idle|mix|mixed|alloc|allocated'; }

install_packages() {
    if command -v sinfo >/dev/null && [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ]; then
        return
    fi
    say "installing slurm-wlm and munge (apt-get; log in $LOGS/apt.log)"
    mkdir -p "$LOGS"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >"$LOGS/apt.log" 2>&1; then
        tail -n 20 "$LOGS/apt.log" >&2
        die "apt-get could not install slurm-wlm and munge"
    fi
}

write_config() {
    local host mem_mb margin
    host=$(hostname -s)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    margin=$(( mem_mb / 20 > 512 ? mem_mb / 20 : 512 ))  # 5 %, at least 512 MB, for the OS and daemons
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; refusing to replace it (move it away first)"
    fi
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge "$PIDS" "$LOGS"
    cat > "$CONF" <<EOF
$MARK
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=30
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE/slurmctld.pidfile
SlurmdPidFile=$STATE/slurmd.pidfile
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
NodeName=$host CPUs=$(nproc) RealMemory=$(( mem_mb - margin )) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    if [ ! -f /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
    chmod 400 /etc/munge/munge.key
}

# Starts one daemon in the foreground of a new session and records its PID.
launch() {
    local name=$1; shift
    # Without job control the background child is no process-group leader, so setsid execs in
    # place and $! is the daemon's own PID.
    setsid "$@" </dev/null >>"$LOGS/$name.out" 2>&1 &
    echo $! > "$PIDS/$name.pid"
}

start() {
    need_root start
    local running=0 d
    for d in "${DAEMONS[@]}"; do alive_pid "$d" >/dev/null && running=$((running + 1)); done
    if [ "$running" -eq "${#DAEMONS[@]}" ] && sinfo_ok; then
        say "already running (started by this script; PIDs in $PIDS)"
        sinfo
        return
    fi
    if [ "$running" -eq 0 ] && sinfo_ok; then
        say "a SLURM controller already answers (not started by this script); leaving it alone"
        sinfo
        return
    fi
    [ "$running" -eq 0 ] || { say "some daemons of an earlier start are still running; stopping them first"; stop; }
    install_packages
    write_config
    rm -f "$PIDS"/*.pid
    launch munged /usr/sbin/munged --foreground --force  # --force: as root it otherwise refuses over log-folder ownership
    for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
    launch slurmctld /usr/sbin/slurmctld -D
    launch slurmd /usr/sbin/slurmd -D
    local t0=$SECONDS
    until node_ready; do
        for d in "${DAEMONS[@]}"; do
            alive_pid "$d" >/dev/null || die "$d exited; see $LOGS/$d.out and $LOGS/*.log"
        done
        [ $((SECONDS - t0)) -lt "$WAIT_S" ] || die "the node is not usable after ${WAIT_S}s (sinfo: $(sinfo -h -N -o '%N %t' 2>&1)); see $LOGS"
        sleep 1
    done
    say "started munged, slurmctld, slurmd (PIDs in $PIDS, logs in $LOGS)"
    sinfo
}

stop() {
    need_root stop
    local d pid pids=()
    for (( i=${#DAEMONS[@]}-1; i>=0; i-- )); do
        d=${DAEMONS[$i]}
        if pid=$(alive_pid "$d"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$d:$pid")
        fi
    done
    for entry in "${pids[@]+"${pids[@]}"}"; do
        d=${entry%%:*}; pid=${entry#*:}
        for _ in $(seq 200); do running "$pid" || break; sleep 0.1; done  # up to 20 s
        if running "$pid"; then
            say "$d (PID $pid) ignored SIGTERM for 20 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
        fi
        say "stopped $d (PID $pid)"
    done
    [ "${#pids[@]}" -gt 0 ] || say "nothing to stop (no daemon started by this script is running)"
    rm -f "$PIDS"/*.pid
}

status() {
    local d pid any=0
    for d in "${DAEMONS[@]}"; do
        if pid=$(alive_pid "$d"); then say "$d running (PID $pid)"; any=1; else say "$d not running"; fi
    done
    if sinfo_ok; then sinfo; else say "no SLURM controller answers"; fi
    [ "$any" -eq 1 ] || sinfo_ok
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
