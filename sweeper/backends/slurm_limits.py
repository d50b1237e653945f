"""The cluster's limits on what one user may have queued, and how much of them the user's jobs already take:
MaxSubmitJobs and MaxJobs of the user's association (`sacctmgr show assoc`) and of its QOS, per user and
per account (`sacctmgr show qos`), MaxJobCount (`scontrol show config`), the user's queued jobs (one
`squeue` call; each array task counts as a job, as SLURM counts it). A profile's
`launch.slurm.max_submit_jobs` stands in where sacctmgr cannot be read, or lowers what it says."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field

from sweeper.backends import slurm_commands
from sweeper.errors import SchedulerError

ASSOC_FIELDS = "Account,User,Partition,MaxSubmit,MaxJobs,QOS,DefaultQOS"
QOS_FIELDS = "Name,MaxSubmitPU,MaxJobsPU,MaxSubmitPA,MaxJobsPA"
QUEUED_STATES = "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED,REQUEUED,REQUEUE_HOLD,REQUEUE_FED"


@dataclass
class Limit:
    """One limit on the user's jobs, and how many of the user's jobs it counts now."""

    name: str  # e.g. "MaxSubmitJobs of association root/proj"
    value: int
    queued: int = 0  # the user's jobs it counts (pending and running; array tasks one each)
    account: str | None = None  # counts only jobs of this account (an association's limit)
    qos: str | None = None  # counts only jobs of this QOS (a QOS per-user limit)

    @property
    def room(self) -> int:
        return max(0, self.value - self.queued)

    def counts(self, job: tuple[str, str]) -> bool:
        account, qos = job
        return (self.account is None or account == self.account) and (self.qos is None or qos == self.qos)


@dataclass
class SubmitLimits:
    """What may still be submitted (`submit`: MaxSubmitJobs-like limits, sbatch refuses past them) and what
    may run at once (`running`: MaxJobs-like, jobs past them wait; shown, not fed)."""

    submit: list[Limit] = field(default_factory=list)
    running: list[Limit] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be read

    @property
    def room(self) -> int | None:
        """Jobs the user may still submit (None: no limit known)."""
        return min((limit.room for limit in self.submit), default=None)

    def lines(self) -> list[str]:
        shown = [f"{lim.name}: {lim.value} ({lim.queued} of your jobs count now)" for lim in self.submit]
        shown += [f"{lim.name}: {lim.value} running at once (jobs past it wait)" for lim in self.running]
        return (shown or ["no submit limit found"]) + [f"not read: {p}" for p in self.problems]


def _number(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def _sacctmgr(args: list[str]) -> list[list[str]]:
    result = slurm_commands._run(["sacctmgr", "-n", "-P", "show", *args])
    if result.returncode != 0:
        raise SchedulerError(
            f"sacctmgr show {args[0]}: {slurm_commands._first_line(result.stderr or result.stdout)}"
        )
    return [line.split("|") for line in result.stdout.splitlines() if line.strip()]


def association(user: str, account: str | None, partition: str | None) -> dict[str, str] | None:
    """The user's association row (the given account's, else the user's default account's), the one of
    the partition if it has its own, else the account-wide one. One sacctmgr call: the user's default
    account comes with its associations (`show user withassoc`)."""
    fields = ["DefaultAccount", *ASSOC_FIELDS.split(",")]
    found = _sacctmgr(["user", user, "withassoc", f"format={','.join(fields)}"])
    rows = [dict(zip(fields, r, strict=False)) for r in found]
    if account is None:
        account = rows[0]["DefaultAccount"].strip() if rows and rows[0]["DefaultAccount"].strip() else None
    rows = [r for r in rows if account is None or r.get("Account") == account]
    own = [r for r in rows if partition and r.get("Partition") == partition]
    general = [r for r in rows if not r.get("Partition")]
    chosen = (own or general or rows or [None])[0]
    return chosen


def read_limits(
    account: str | None,
    qos: str | None,
    partition: str | None,
    profile_max: int | None,
    config: dict[str, str] | None = None,
) -> SubmitLimits:
    """The limits that apply to this user's jobs of that account/QOS/partition, with what is queued now.
    `config`: `scontrol show config` where the caller has read it already."""
    user = getpass.getuser()
    limits = SubmitLimits()
    try:
        assoc = association(user, account, partition)
        if assoc is not None:
            account = account or assoc["Account"]
            where = f"association {user}/{account}"
            if _number(assoc.get("MaxSubmit")) is not None:
                limits.submit.append(
                    Limit(f"MaxSubmitJobs of {where}", _number(assoc["MaxSubmit"]), account=account)
                )
            if _number(assoc.get("MaxJobs")) is not None:
                limits.running.append(
                    Limit(f"MaxJobs of {where}", _number(assoc["MaxJobs"]), account=account)
                )
            qos = (
                qos
                or assoc.get("DefaultQOS")
                or (assoc.get("QOS") if "," not in assoc.get("QOS", ",") else None)
            )
        if qos:
            _qos_limits(limits, qos, account)
    except SchedulerError as exc:
        limits.problems.append(str(exc))
    try:
        count = _number((config or slurm_commands.cluster_config()).get("MaxJobCount"))
        if count is not None:
            limits.submit.append(Limit("MaxJobCount of the cluster", count))
    except SchedulerError as exc:
        limits.problems.append(str(exc))
    if profile_max is not None:
        limits.submit.append(Limit("launch.slurm.max_submit_jobs", profile_max))
    if limits.submit:
        try:
            jobs = queued_jobs(user)
        except SchedulerError as exc:
            limits.problems.append(f"{exc} (your queued jobs are not counted)")
            jobs = []
        for limit in limits.submit:
            limit.queued = sum(1 for job in jobs if limit.counts(job))
    return limits


def _qos_limits(limits: SubmitLimits, qos: str, account: str | None) -> None:
    for row in _sacctmgr(["qos", "where", f"name={qos}", f"format={QOS_FIELDS}"]):
        values = dict(zip(QOS_FIELDS.split(","), row, strict=False))
        for key, name, scope in (
            ("MaxSubmitPU", "MaxSubmitJobsPerUser", None),
            ("MaxSubmitPA", "MaxSubmitJobsPerAccount", account),
        ):
            if _number(values.get(key)) is not None:
                limits.submit.append(
                    Limit(f"{name} of QOS {qos}", _number(values[key]), account=scope, qos=qos)
                )
        for key, name in (("MaxJobsPU", "MaxJobsPerUser"), ("MaxJobsPA", "MaxJobsPerAccount")):
            if _number(values.get(key)) is not None:
                limits.running.append(Limit(f"{name} of QOS {qos}", _number(values[key]), qos=qos))


def queued_jobs(user: str) -> list[tuple[str, str]]:
    """(account, qos) of each of the user's queued or running jobs, array tasks one each (one squeue call)."""
    result = slurm_commands._run(["squeue", "-h", "-r", "-u", user, "-t", QUEUED_STATES, "-o", "%a|%q"])
    if result.returncode != 0:
        raise SchedulerError(f"squeue failed: {slurm_commands._first_line(result.stderr or result.stdout)}")
    return [tuple(line.split("|", 1)) for line in result.stdout.splitlines() if "|" in line]
