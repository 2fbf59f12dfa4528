#!/usr/bin/env bash
# A one-node Slurm cluster on 127.0.0.1 for tests/slurm.rs: munged on a private socket, then
# slurmctld and slurmd with a generated slurm.conf, all state, logs and sockets under DIR.
#
#     tests/support/slurm-one-node.sh start DIR CTLD_PORT SLURMD_PORT   # prints the slurm.conf path
#     tests/support/slurm-one-node.sh stop DIR
#
# `start` installs Debian's slurm-wlm and munge with apt-get when slurmctld is missing (root
# only), and exits 3 with one line on stderr when it cannot (not root, no apt-get, the install
# failed): the caller skips loudly. Commands reach the cluster with SLURM_CONF=DIR/slurm.conf.
# Jobs run as root (SlurmUser=root), with no cgroups (proctrack/linuxproc, task/none) and no
# accounting, so nothing outside DIR is touched but the packages.
set -euo pipefail

usage() { echo "usage: $0 start DIR CTLD_PORT SLURMD_PORT | stop DIR" >&2; exit 2; }
skip() { echo "slurm-one-node: $*" >&2; exit 3; }

cmd="${1:-}"
dir="${2:-}"
[[ -n "$cmd" && -n "$dir" ]] || usage

if [[ "$cmd" == stop ]]; then
    if [[ -f "$dir/slurm.conf" ]]; then
        SLURM_CONF="$dir/slurm.conf" scontrol shutdown >/dev/null 2>&1 || true
    fi
    for pidfile in "$dir"/slurmctld.pid "$dir"/slurmd.pid "$dir"/munge/munged.pid; do
        if [[ -f "$pidfile" ]]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    done
    # Job steps still running (a test that failed mid-job) belong to this cluster alone when
    # their environment names its slurm.conf.
    for pid in $(pgrep -x slurmstepd || true); do
        if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "SLURM_CONF=$dir/slurm.conf"; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    exit 0
fi
[[ "$cmd" == start && $# -eq 4 ]] || usage
ctld_port="$3"
slurmd_port="$4"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    [[ "$(id -u)" == 0 ]] || skip "slurmctld or munged is missing and installing slurm-wlm and munge needs root"
    command -v apt-get >/dev/null || skip "slurmctld or munged is missing and there is no apt-get to install slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q slurm-wlm munge >"$dir/apt.log" 2>&1; then
        # A fresh machine may have no package lists yet.
        apt-get update -q >>"$dir/apt.log" 2>&1 || true
        apt-get install -y -q slurm-wlm munge >>"$dir/apt.log" 2>&1 ||
            skip "apt-get install slurm-wlm munge failed (see $dir/apt.log)"
    fi
fi
[[ "$(id -u)" == 0 ]] || skip "the one-node cluster runs slurmd, which needs root"

mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
chmod 700 "$dir/munge"
head -c 1024 /dev/urandom >"$dir/munge/munge.key"
chmod 600 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/munged.seed" \
    --log-file="$dir/munge/munged.log"

host="$(hostname)"
mem_mb=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512))
cat >"$dir/slurm.conf" <<EOF
ClusterName=promptevo-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -c
slurmd
# Bounded wait for the node to report idle.
for _ in $(seq 1 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -q idle; then
        echo "$SLURM_CONF"
        exit 0
    fi
    sleep 0.5
done
echo "slurm-one-node: the node did not come up within 30 s; see $dir/log" >&2
exit 1
