#!/usr/bin/env bash
# A one-node SLURM cluster on this host, for the `slurm` tests and for trying the launcher without a real cluster.
#
#   bash scripts/slurm/local_cluster.sh start     # install slurm-wlm + munge if missing (root), start, wait until idle
#   bash scripts/slurm/local_cluster.sh status    # exit 0 and print the node state when it answers
#   bash scripts/slurm/local_cluster.sh stop
#   export SLURM_CONF=$(bash scripts/slurm/local_cluster.sh conf)   # point sbatch/squeue/scontrol at it
#
# slurmctld and slurmd run as root on this host with their state, logs and slurm.conf under $MMATTN_SLURM_DIR
# (default /tmp/mmattn-slurm): auth/munge, proctrack/linuxproc, task/none (no cgroups), select/cons_tres with CR_CPU,
# ports of their own, one partition `debug` with one node holding every CPU of this machine. Without a GPU the node
# has no GRES; jobs run CPU DDP (trainer=ddp_cpu). `start` is idempotent: a running cluster is left as it is.
set -Eeuo pipefail

DIR=${MMATTN_SLURM_DIR:-/tmp/mmattn-slurm}
CONF=$DIR/slurm.conf
CTLD_PORT=${MMATTN_SLURMCTLD_PORT:-16817}
SLURMD_PORT=$((CTLD_PORT + 1))
NODE=$(hostname -s)
export SLURM_CONF=$CONF

die() { echo "local_cluster.sh: $*" >&2; exit 1; }
# A daemon that refuses to start (a port in use, a stale daemon still exiting) must not end the script silently.
trap 'die "\`$BASH_COMMAND\` failed (exit $?); see $DIR/slurmctld.log, $DIR/slurmd.log and /var/log/munge"' ERR

ensure_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurm-wlm)
  command -v munged >/dev/null || missing+=(munge)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "needs ${missing[*]} (Debian packages) and root to install them: sudo apt-get install ${missing[*]}"
  command -v apt-get >/dev/null || die "needs ${missing[*]}; this is not a Debian/Ubuntu host, install SLURM and munge by hand"
  echo "installing ${missing[*]} (apt-get) ..."
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

write_conf() {
  local cpus mem
  cpus=$(nproc)
  mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024))
  mkdir -p "$DIR/ctld" "$DIR/spool"
  cat >"$CONF" <<EOF
# Written by scripts/slurm/local_cluster.sh; a one-node test cluster.
ClusterName=mmattn-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ReturnToService=2
# Seconds between SIGTERM and SIGKILL when a job is cancelled, preempted or requeued: time to save a checkpoint.
KillWait=30
# Finished jobs stay visible to squeue/scontrol this long (there is no accounting database for sacct).
MinJobAge=600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

# scontrol waits for its timeout when no controller listens, so look for the daemon before asking it.
answers() { pgrep -f "slurmctld -f $CONF" >/dev/null && timeout 20 scontrol ping 2>/dev/null | grep -q "is UP"; }

# Empty while the controller is still starting (sinfo fails then), never an error.
node_state() { { sinfo -h -n "$NODE" -o %t 2>/dev/null || true; } | head -n 1; }

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# slurmctld and slurmd authenticate every message through munged; wait until it really answers.
start_munge() {
  munge_works && return 0
  mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
  [ -f /etc/munge/munge.key ] || mungekey --create >/dev/null
  for _ in $(seq 1 20); do
    # A munged that is still shutting down holds the socket: wait for it rather than fail.
    pgrep -x munged >/dev/null || munged --force 2>/dev/null || true
    munge_works && return 0
    sleep 0.5
  done
  die "munged does not answer (munge -n | unmunge fails); see /var/log/munge/munged.log"
}

start() {
  ensure_packages
  if answers && [ -f "$CONF" ]; then
    echo "already running: node $NODE is $(node_state) (SLURM_CONF=$CONF)"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "slurmctld and slurmd run as root here; run as root (or start SLURM yourself)"
  write_conf
  start_munge
  slurmctld -f "$CONF"
  slurmd -f "$CONF"
  local state=""
  for _ in $(seq 1 60); do
    state=$(node_state)
    case "$state" in idle | mix | alloc) break ;; esac
    sleep 1
  done
  case "$state" in
    idle | mix | alloc) echo "SLURM is up: node $NODE is $state, partition debug (SLURM_CONF=$CONF)" ;;
    *) die "node $NODE did not become idle (state '${state:-none}'); see $DIR/slurmctld.log and $DIR/slurmd.log" ;;
  esac
}

stop() {
  local pidfile
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  for _ in $(seq 1 20); do
    pgrep -f "slurm(ctld|d) -f $CONF" >/dev/null || break
    sleep 0.5
  done
  echo "stopped (state kept under $DIR)"
}

status() {
  if answers; then
    echo "up: node $NODE is $(node_state) (SLURM_CONF=$CONF)"
  else
    echo "down (no slurmctld answers for $CONF)"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  conf) echo "$CONF" ;;
  *) die "usage: $0 start|stop|status|conf" ;;
esac
