"""The exit codes of the shipit command: stable, documented (docs/shipit_cli.md, "Exit codes"), unit-tested.

They are derived from what happened to each host, as the runner's events tell it (shipit.report), never from
Ansible's text output. Each host gets an outcome; the run exits with the most severe one.
"""

import enum

from .stages import REFUSAL_STAGES, ROLLBACK_STAGES


class ExitCode(enum.IntEnum):
    OK = 0               # deployed (or rolled back, backed up, ...) and healthy
    REFUSED = 1          # refused before any change: bad input, plan or preflight failed, lock held
    ARTIFACT = 2         # the artifact is missing or broken (build problem): nothing was changed
    FAILED = 3           # failed after changing a host, and nothing could be rolled back
    ROLLED_BACK = 4      # the deploy failed and every failed host was rolled back, healthy
    ROLLBACK_FAILED = 5  # a rollback failed too: a host may be down (critical)


OUTCOMES = {
    ExitCode.OK: "ok",
    ExitCode.REFUSED: "refused",
    ExitCode.ARTIFACT: "artifact_error",
    ExitCode.FAILED: "failed",
    ExitCode.ROLLED_BACK: "rolled_back",
    ExitCode.ROLLBACK_FAILED: "rollback_failed",
}

DESCRIPTIONS = {
    ExitCode.OK: "deployed and healthy",
    ExitCode.REFUSED: "refused before any change",
    ExitCode.ARTIFACT: "artifact or build problem, nothing changed",
    ExitCode.FAILED: "failed and nothing could be rolled back",
    ExitCode.ROLLED_BACK: "failed and rolled back (healthy)",
    ExitCode.ROLLBACK_FAILED: "CRITICAL: the rollback failed too",
}

# Most severe last: the run exits with the most severe outcome of its hosts. A host that could not be
# rolled back (3) is worse than one that was (4): the service may be down there.
SEVERITY = (ExitCode.OK, ExitCode.REFUSED, ExitCode.ARTIFACT, ExitCode.ROLLED_BACK, ExitCode.FAILED,
            ExitCode.ROLLBACK_FAILED)

# Operations whose playbooks have no refusal stage of their own (the rollback role refuses a missing target
# itself): for them a failure before any change on the host is the refusal.
CHANGE_ONLY_OPERATIONS = frozenset({"rollback", "history", "backup", "restore", "maintenance"})


# The deploy playbook's own word for each host (shipit_outcome, kept in the run's stats as shipit_outcomes by
# stages/report.yml): the verdict when the run reached its report. A run that ended before (a refusal in the
# preflight or the lock, an error of Ansible) is judged from its failures (host_exit_code).
PLAYBOOK_OUTCOMES = {
    "deployed": ExitCode.OK,
    "unchanged": ExitCode.OK,
    "skipped": ExitCode.OK,  # a later batch, not started: the rollout stopped for another host's failure
    "rolled_back": ExitCode.ROLLED_BACK,
    "fleet_rolled_back": ExitCode.ROLLED_BACK,
    "failed": ExitCode.FAILED,
    "lock_lost": ExitCode.FAILED,
    "in_progress": ExitCode.FAILED,  # lost mid-deploy (unreachable)
    "rollback_failed": ExitCode.ROLLBACK_FAILED,
    "recovery_failed": ExitCode.ROLLBACK_FAILED,
    "fleet_rollback_failed": ExitCode.ROLLBACK_FAILED,
}


def playbook_exit_code(outcome):
    """The exit code of a host from the playbook's outcome for it, or None when it is not a final one."""
    return PLAYBOOK_OUTCOMES.get(outcome)


def host_exit_code(operation, host):
    """Exit code of one host.

    host: what the report knows about the host (shipit.report.HostState): its failures in order, each with
    its stage, whether it came from inside a role, whether it is an artifact check and whether the host had
    changed before it; and whether the rollback role ran on the host.
    """
    if not host.failures:
        # A healthy host rolled back with the others (a fleet rollback after another host failed).
        return ExitCode.ROLLED_BACK if host.rollback_ran and operation != "rollback" else ExitCode.OK
    first = host.failures[0]
    # A refusal changed nothing: a failure in the refusal stages after a change (the recovery of an
    # interrupted run changes the host inside the lock stage) is a failure.
    if first.stage in REFUSAL_STAGES and not first.changed_before:
        return ExitCode.ARTIFACT if first.artifact_check else ExitCode.REFUSED
    if operation in CHANGE_ONLY_OPERATIONS and not first.changed_before:
        return ExitCode.REFUSED
    # The rollback failed: a task of the rollback role, or of the kind or health role it runs, failed (the
    # rescue in stages/rollback.yml answers that with its "CRITICAL ... the rollback ... failed too").
    if any(f.stage in ROLLBACK_STAGES and f.in_role for f in host.failures):
        return ExitCode.ROLLBACK_FAILED
    if host.rollback_ran and operation != "rollback":
        return ExitCode.ROLLED_BACK
    return ExitCode.FAILED


def run_exit_code(host_codes, changed_hosts=0, runner_failed=False):
    """Exit code of the run from its hosts' codes.

    changed_hosts: hosts on which something changed. A refusal on one host while another changed is not
    "refused before any change": it is a failed deploy that left that host as it was (3).
    runner_failed: the runner ended without success although no host failed (a syntax error, an inventory
    that does not parse, a timeout, a cancel): refused when nothing changed, failed otherwise.
    """
    codes = list(host_codes)
    worst = max(codes, key=SEVERITY.index) if codes else ExitCode.OK
    if worst in (ExitCode.REFUSED, ExitCode.ARTIFACT) and changed_hosts:
        return ExitCode.FAILED
    if worst == ExitCode.OK and runner_failed:
        return ExitCode.FAILED if changed_hosts else ExitCode.REFUSED
    return worst
