#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine: munged, slurmctld and slurmd, run directly
# (no systemd), one node named after `hostname -s` in a default partition `debug`.
# Idempotent: a second run only starts what is not running (and restarts the daemons if the
# configuration changed). `slurm-up.sh stop` stops the daemons again.
# Needs root and Debian (apt-get). Exits 0 once `sinfo` shows the node idle.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
STATE=/var/lib/slurm
LOGS=/var/log/slurm
PIDS=/run/slurm
HOST=$(hostname -s)
WAIT_S=${SLURM_UP_WAIT_S:-60}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

tails() {
    for f in /var/log/munge/munged.log "$LOGS/slurmctld.log" "$LOGS/slurmd.log"; do
        [ -f "$f" ] && { echo "--- $f"; tail -n 25 "$f"; }
    done
    command -v sinfo >/dev/null && { echo "--- sinfo"; sinfo -N -l 2>&1 || true; }
}

fail() { echo "slurm-up: $*" >&2; tails >&2; exit 1; }

# Send TERM to the daemon in a pid file and wait for it to exit.
stop_pid() {
    local pidfile=$1 pid
    alive "$pidfile" || return 0
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$pidfile"
}

if [ "${1:-}" = stop ]; then
    stop_pid "$PIDS/slurmd.pid"
    stop_pid "$PIDS/slurmctld.pid"
    stop_pid /run/munge/munged.pid
    echo "slurm-up: stopped"
    exit 0
fi

[ "$(id -u)" = 0 ] || fail "must run as root"

# 1. Packages (apt-get update only when something is missing).
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sinfo >/dev/null \
    || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# 2. Munge: key, runtime directory, daemon (as the munge user, like the init script).
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
    munge -n </dev/null | unmunge >/dev/null || fail "munged does not answer"
fi

# 3. slurm.conf: one node with this machine's CPUs and memory (less a margin), no cgroups,
#    no accounting database.
CPUS=$(nproc)
MEM_TOTAL=$(free -m | awk '/^Mem:/ {print $2}')
MARGIN=$((MEM_TOTAL / 10 > 512 ? MEM_TOTAL / 10 : 512))
MEM=$((MEM_TOTAL - MARGIN > 256 ? MEM_TOTAL - MARGIN : 256))
install -d -m 755 /etc/slurm "$STATE/slurmctld" "$STATE/slurmd" "$LOGS" "$PIDS"
NEW=$(mktemp)
trap 'rm -f "$NEW"' EXIT
cat >"$NEW" <<EOF
# Single-node cluster written by .ci/slurm-up.sh
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
InactiveLimit=0
MinJobAge=300
KillWait=30
Waittime=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$NEW" "$CONF"; then
    # A new node definition needs fresh daemons.
    stop_pid "$PIDS/slurmd.pid"
    stop_pid "$PIDS/slurmctld.pid"
    install -m 644 "$NEW" "$CONF"
fi

# 4. Daemons (each forks into the background and writes its pid file).
if ! alive "$PIDS/slurmctld.pid"; then
    slurmctld || fail "slurmctld did not start"
    for _ in $(seq 50); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
fi
if ! alive "$PIDS/slurmd.pid"; then
    slurmd || fail "slurmd did not start"
fi

# 5. Wait for the node to be idle (resume it once if it came up drained or down).
resumed=0
for _ in $(seq "$WAIT_S"); do
    state=$(sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -n 1)
    case "$state" in
        idle | mix | alloc) echo "slurm-up: node $HOST is $state"; sinfo; exit 0 ;;
        drain* | down* | inval*)
            if [ "$resumed" = 0 ]; then
                scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true
                resumed=1
            fi ;;
    esac
    sleep 1
done
fail "node $HOST not idle after ${WAIT_S}s (state: ${state:-none})"
