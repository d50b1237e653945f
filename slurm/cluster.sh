#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, with accounting (slurmdbd + MariaDB), for tests and CI.
#
#   slurm/cluster.sh install   apt-get the daemons (Debian/Ubuntu: munge, slurmctld, slurmd, slurmdbd, mariadb)
#   slurm/cluster.sh start     write the config and start munged, mariadbd, slurmdbd, slurmctld, slurmd
#   slurm/cluster.sh stop      scancel every job, wait for the node to drain, stop the daemons it started
#   slurm/cluster.sh fresh     stop, wipe controller state and the accounting database, start (job ids from 1)
#   slurm/cluster.sh status    which daemons run, and sinfo
#
# Needs root and no init system (it runs the daemons itself, in the foreground under setsid, and records
# their PIDs in $STATE_DIR/pids; stop signals exactly those PIDs, never a process found by name).
# It writes /etc/slurm/slurm.conf and slurmdbd.conf, and refuses to replace files it did not write.
#
# Knobs (environment):
#   SLURM_NODE_CPUS=8          CPUs the node declares (more than the hardware: many tiny jobs at once)
#   SLURM_MAX_ARRAY_SIZE=5     MaxArraySize, low on purpose so that tests see sweeps split into several arrays
#   SLURM_ENFORCE=associations,limits   AccountingStorageEnforce (none: sacctmgr limits are not enforced)
#   SWEEPER_SLURM_STATE=/var/lib/sweeper-slurm   PIDs and daemon stdout/stderr
set -euo pipefail

STATE_DIR=${SWEEPER_SLURM_STATE:-/var/lib/sweeper-slurm}
PID_DIR=$STATE_DIR/pids
LOG_DIR=$STATE_DIR/logs
NODE_CPUS=${SLURM_NODE_CPUS:-8}
MAX_ARRAY_SIZE=${SLURM_MAX_ARRAY_SIZE:-5}
ENFORCE=${SLURM_ENFORCE:-associations,limits}
CLUSTER=localcluster
DB_NAME=slurm_acct_db
DB_PASS=slurmdbpass
MARKER="# written by sweeper slurm/cluster.sh"
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
# Start order; stop goes in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

say() { printf '[cluster] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# wait_for SECONDS WHAT COMMAND...: poll COMMAND every 0.2 s until it succeeds.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

need_root() { [[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts system daemons)"; }

installed() {
    local bin
    for bin in munged mariadbd slurmdbd slurmctld slurmd sbatch sacct; do
        command -v "$bin" >/dev/null || [[ -x /usr/sbin/$bin ]] || return 1
    done
}

cmd_install() {
    need_root
    if installed; then
        say "packages already installed"
        return
    fi
    command -v apt-get >/dev/null || die "no apt-get: install ${PACKAGES[*]} with this system's package manager"
    say "installing ${PACKAGES[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
}

# -- PIDs of what we started ---------------------------------------------------------------------------
pid_of() { [[ -f $PID_DIR/$1 ]] && cat "$PID_DIR/$1" || true; }

# alive NAME: the recorded PID runs and is still that daemon (guards against a recycled PID).
alive() {
    local pid
    pid=$(pid_of "$1")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$1"
}

# launch NAME COMMAND...: run a foreground daemon detached from this shell, record its PID.
launch() {
    local name=$1
    shift
    setsid "$@" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$PID_DIR/$name"
}

# -- configuration -----------------------------------------------------------------------------------------
write_owned() { # write_owned PATH: stdin -> PATH, unless PATH exists and was not written by this script
    local path=$1 text
    text=$(cat)
    if [[ -e $path ]] && ! grep -qF "$MARKER" "$path"; then
        die "$path exists and was not written by this script; move it away to use the test cluster"
    fi
    mkdir -p "$(dirname "$path")"
    printf '%s\n%s\n' "$MARKER" "$text" >"$path"
}

write_config() {
    local host mem_mb
    host=$(hostname -s)
    getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >>/etc/hosts
    # Declare a little less memory than the machine has, or slurmd marks the node invalid.
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.97}' /proc/meminfo)
    write_owned /etc/slurm/slurm.conf <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
# A requeued job may only restart once its credential expired (default 120 s).
AuthInfo=cred_expire=10
CredType=cred/munge
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Lets the node declare more CPUs than the hardware has.
SlurmdParameters=config_overrides
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MaxArraySize=$MAX_ARRAY_SIZE
MaxJobCount=100000
MinJobAge=300
KillWait=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
# Jobs need a valid association, and sacctmgr limits (MaxSubmitJobs, ...) are enforced: sbatch refuses what
# a real cluster would refuse (tests/test_feeding.py shows it).
AccountingStorageEnforce=$ENFORCE
JobCompType=jobcomp/none
NodeName=$host CPUs=$NODE_CPUS Sockets=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    write_owned /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
    chown slurm:slurm /etc/slurm/slurmdbd.conf
    chmod 600 /etc/slurm/slurmdbd.conf
    mkdir -p /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
    chown slurm:slurm /var/lib/slurm/slurmctld /var/log/slurm
}

# -- start / stop ------------------------------------------------------------------------------------------
all_alive() {
    local name
    for name in "${DAEMONS[@]}"; do alive "$name" || return 1; done
}

# A daemon of the same name that this script did not start (a system SLURM, another test cluster) would
# fight ours for its ports and files: leave it alone and stop here.
refuse_foreign_daemons() {
    local name pids
    for name in "${DAEMONS[@]}"; do
        pids=$(pgrep -x "$name" || true)
        [[ -z $pids ]] || die "$name is already running (pid $(echo $pids)) and was not started by this script"
    done
}

cmd_start() {
    need_root
    installed || cmd_install
    if all_alive && sinfo -h >/dev/null 2>&1; then
        say "already running"
        return
    fi
    stop_daemons # whatever is left of an earlier start
    refuse_foreign_daemons
    mkdir -p "$PID_DIR" "$LOG_DIR"
    write_config
    # /run is empty after boot and nothing (no systemd-tmpfiles) creates these.
    mkdir -p /run/munge /run/mysqld
    chown munge:munge /run/munge
    chmod 755 /run/munge
    chown mysql:root /run/mysqld
    rm -f /run/slurmctld.pid /run/slurmd.pid /run/slurmdbd.pid

    launch munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
    wait_for 20 munged sh -c 'munge -n | unmunge' || die "munged did not start (see $LOG_DIR/munged.log)"

    launch mariadbd /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
        --innodb-buffer-pool-size=512M --innodb-lock-wait-timeout=900
    wait_for 60 mariadbd mariadb-admin ping || die "mariadbd did not start (see $LOG_DIR/mariadbd.log)"
    if [[ ${FRESH:-0} == 1 ]]; then
        mariadb -u root -e "DROP DATABASE IF EXISTS $DB_NAME"
    fi
    mariadb -u root <<EOF
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF

    launch slurmdbd /usr/sbin/slurmdbd -D
    wait_for 60 slurmdbd sacctmgr -n list cluster || die "slurmdbd did not answer (see /var/log/slurm/slurmdbd.log)"
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi

    launch slurmctld /usr/sbin/slurmctld -D
    launch slurmd /usr/sbin/slurmd -D
    node_idle() { sinfo -h -o %T | grep -qx idle; }
    wait_for 60 "node idle" node_idle || die "the node did not become idle (see /var/log/slurm/slurmctld.log)"
    say "up: $(sinfo -h -o '%P %a %D %T %c CPUs')"
}

# stop_one NAME: TERM the recorded PID, wait for it to exit (KILL after 20 s).
stop_one() {
    local name=$1 pid
    pid=$(pid_of "$name")
    if alive "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 20))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name ($pid) ignored TERM for 20 s: KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$PID_DIR/$name"
}

# Running jobs outlive slurmd (their slurmstepd does, as on a real node): cancel them all first.
cancel_all_jobs() {
    alive slurmctld || return 0
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null | sort -u || true)
    [[ -z $jobs ]] && return 0
    say "cancelling $(wc -w <<<"$jobs") job(s)"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    queue_empty() { [[ -z $(squeue -h -o %i 2>/dev/null) ]] && ! pgrep -x slurmstepd >/dev/null; }
    wait_for 60 "empty queue" queue_empty || say "jobs still draining after 60 s; stopping anyway"
}

stop_daemons() {
    [[ -d $PID_DIR ]] || return 0
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_one "${DAEMONS[i]}"; done
    # slurmctld leaves its pid file behind, which later confuses the packages' maintainer scripts.
    rm -f /run/slurmctld.pid /run/slurmd.pid /run/slurmdbd.pid
}

cmd_stop() {
    need_root
    cancel_all_jobs
    stop_daemons
    say "stopped"
}

cmd_fresh() {
    need_root
    installed || cmd_install
    cancel_all_jobs
    stop_daemons
    # Job ids restart at 1 and no stale accounting record can match a new job.
    rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*
    FRESH=1 cmd_start
}

cmd_status() {
    local name rc=0
    for name in "${DAEMONS[@]}"; do
        if alive "$name"; then
            printf '%-10s running (pid %s)\n' "$name" "$(pid_of "$name")"
        else
            printf '%-10s not running\n' "$name"
            rc=1
        fi
    done
    sinfo 2>/dev/null || rc=1
    return $rc
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
fresh) cmd_fresh ;;
status) cmd_status ;;
*)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
