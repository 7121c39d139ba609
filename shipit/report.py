"""The run report, built from ansible-runner's events (never from Ansible's text output).

ReportBuilder.feed() takes the events as the runner emits them (or as it kept them in
artifacts/<ident>/job_events/): it follows each host through the stages (shipit.stages), tells whoever
listens when a host leaves a stage, and collects health results, failures, the rollback, backup ids and
lock holders. build() returns report.json's content (schema: docs/report-schema.json); to_markdown()
renders it for $GITHUB_STEP_SUMMARY or a pull-request comment.
"""

import datetime
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .exitcodes import DESCRIPTIONS, OUTCOMES, ExitCode, host_exit_code, playbook_exit_code, run_exit_code
from .stages import ROLLBACK_STAGES, is_artifact_check, stage_of, stage_sort_key, step_stage

SCHEMA_VERSION = 1
RESULT_EVENTS = frozenset({"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"})
ITEM_EVENTS = frozenset({"runner_item_on_ok", "runner_item_on_failed", "runner_item_on_skipped"})
TASK_EVENTS = RESULT_EVENTS | ITEM_EVENTS | {"runner_on_start"}
CONTROLLER = "localhost"
MESSAGE_LIMIT = 2000
OK_TEXT = {"deploy": "deployed and healthy", "rollback": "rolled back and healthy", "backup": "backed up",
           "restore": "restored", "history": "ledger read", "maintenance": "maintenance set"}


def _time(value):
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        return None


def _iso(moment):
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


def _text(value, limit=MESSAGE_LIMIT):
    """A message for the report: one string, bounded."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = "; ".join(str(v) for v in value)
    value = " ".join(str(value).split())
    return value if len(value) <= limit else value[: limit - 3] + "..."


@functools.lru_cache(maxsize=1)
def history_filters():
    """The collection's history filters (plugins/filter/history.py of the collection shipit runs): one layout
    of the history rows and table for playbooks/history.yml and the shipit command. Loaded once a run."""
    import importlib.util
    from .runner import find_project
    path = find_project() / "plugins" / "filter" / "history.py"
    spec = importlib.util.spec_from_file_location("shipit_deploy_history_filters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _action_is(data, name):
    action = data.get("resolved_action") or data.get("task_action") or ""
    return action == name or action.endswith("." + name)


def _module_results(data, res):
    """(module, result, label) of what a task ran: its module's result, or each step of shipit.deploy.agent
    (the label of a step is its name; of a loop item, the item's name)."""
    if _action_is(data, "agent"):
        steps = res.get("steps") if isinstance(res.get("steps"), list) else []
        results = res.get("step_results") if isinstance(res.get("step_results"), dict) else {}
        return [(step.get("module"), results.get(step.get("name")) or {}, step.get("name"))
                for step in steps if isinstance(step, dict) and step.get("ok") is not None]
    action = (data.get("resolved_action") or data.get("task_action") or "").rsplit(".", 1)[-1]
    item = res.get("item") if isinstance(res.get("item"), dict) else {}
    return [(action, res, res.get("_ansible_item_label") or item.get("name"))]


def _role(data):
    return (data.get("role") or "").rsplit(".", 1)[-1]


@dataclass
class StageRecord:
    name: str
    started: datetime.datetime = None
    ended: datetime.datetime = None
    tasks: int = 0
    changed: int = 0
    skipped: int = 0
    failed: bool = False
    unreachable: bool = False
    message: str = None
    failed_task: str = None
    # A host may come back to a stage (the notify at the start and at the end of a run): its duration is
    # the time spent in each visit, not the time between the first and the last.
    rollback_role: bool = False  # the rollback role ran in this stage
    _spent: float = 0.0
    _visit: list = None

    def touch(self, start, end):
        if start and (self.started is None or start < self.started):
            self.started = start
        if end and (self.ended is None or end > self.ended):
            self.ended = end
        if self._visit is None:
            self._visit = [start or end, end or start]
        else:
            if start and (self._visit[0] is None or start < self._visit[0]):
                self._visit[0] = start
            if end and (self._visit[1] is None or end > self._visit[1]):
                self._visit[1] = end

    def leave(self):
        self._spent += self._visit_seconds()
        self._visit = None

    def _visit_seconds(self):
        if self._visit and self._visit[0] and self._visit[1]:
            return max((self._visit[1] - self._visit[0]).total_seconds(), 0.0)
        return 0.0

    @property
    def duration(self):
        return round(self._spent + self._visit_seconds(), 3)

    @property
    def status(self):
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        if self.changed:
            return "changed"
        if self.tasks and self.skipped == self.tasks:
            return "skipped"
        return "ok"

    def as_dict(self):
        return {"name": self.name, "status": self.status, "duration": self.duration,
                "started_at": _iso(self.started), "finished_at": _iso(self.ended),
                "tasks": self.tasks, "changed": self.changed,
                "failed_task": self.failed_task, "message": self.message}


@dataclass
class Failure:
    stage: str
    task: str
    message: str
    in_role: bool = False
    artifact_check: bool = False
    changed_before: bool = False
    unreachable: bool = False
    closing: bool = False  # the playbook's final `fail` of a host that failed earlier

    def as_dict(self):
        return {"stage": self.stage, "task": self.task, "message": self.message, "unreachable": self.unreachable}


@dataclass
class HealthResult:
    stage: str
    check: str
    healthy: bool
    attempts: int = None
    elapsed: float = None
    message: str = None
    assertion: str = None
    reason: str = None
    error: str = None

    def as_dict(self):
        return {"stage": self.stage, "check": self.check, "healthy": self.healthy, "attempts": self.attempts,
                "elapsed": self.elapsed, "message": self.message, "assertion": self.assertion,
                "reason": self.reason, "error": self.error}


@dataclass
class HostState:
    name: str
    stages: dict = field(default_factory=dict)
    current: str = None
    failures: list = field(default_factory=list)
    changed: bool = False
    health: list = field(default_factory=list)
    rollback_ran: bool = False
    rollback_target: dict = None
    lock_holder: str = None
    backup_id: str = None
    history: list = None
    # shipit history: the deploy lock as the playbook read it ({holder, in_progress}: sentences or null); not in
    # report.json (its schema has no place for it yet), `shipit history` prints it.
    history_lock: dict = None
    playbook_outcome: str = None
    final_version: str = None
    # Failed loop items per task, to name the item that failed rather than "One or more items failed".
    failed_items: dict = field(default_factory=dict)


class ReportBuilder:
    """Follows a run event by event. on_stage_end(host, StageRecord) is called when a host leaves a stage;
    on_task_start(host, stage, task) when a task starts on a host."""

    def __init__(self, operation, env, version=None, check=False, limit=None, on_stage_end=None, on_task_start=None):
        self.operation = operation
        self.env = env
        self.requested_version = version
        self.check = check
        self.limit = limit
        self.on_stage_end = on_stage_end
        self.on_task_start = on_task_start
        self.controller = HostState(CONTROLLER)
        self.hosts = {}
        self.release_id = None
        self.app = None
        self.stats = None
        self.first_event = None
        self.last_event = None
        self.events = 0

    # -- events -------------------------------------------------------------------------------------------
    def feed(self, event):
        self.events += 1
        kind = event.get("event")
        data = event.get("event_data") or {}
        created = _time(event.get("created"))
        if created:
            self.first_event = self.first_event or created
            self.last_event = created
        if kind == "playbook_on_stats":
            self.stats = data
            self.close()
            return
        host_name = data.get("host")
        if kind not in TASK_EVENTS or not host_name:
            return
        host = self.hosts.get(host_name) or HostState(host_name)
        stage = stage_of(data, host.current)
        failed = kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors")
        if stage is None:  # an include wrapper: it counts only when it fails
            if not failed:
                return
            stage = host.current or "run"
        if stage == "plan":
            host = self.controller
        else:
            self.hosts.setdefault(host_name, host)
            if self.controller.current is not None:  # the plan is over once a host starts
                self._leave(self.controller)
        self._enter(host, stage, created)
        record = host.stages[stage]
        res = data.get("res") if isinstance(data.get("res"), dict) else {}

        if kind == "runner_on_start":
            record.touch(created, created)
            if self.on_task_start:
                self.on_task_start(host.name, stage, data.get("task"))
            return
        start, changed = _time(data.get("start")) or created, bool(res.get("changed"))
        if kind != "runner_on_unreachable" and kind not in ITEM_EVENTS and _action_is(data, "agent"):
            stage, start, changed = self._split_by_step(host, stage, res, start, changed)
            record = host.stages[stage]
        self._collect(host, stage, data, res, kind)
        if kind in ITEM_EVENTS:
            return
        record.touch(start, _time(data.get("end")) or created)
        record.tasks += 1
        if kind == "runner_on_skipped":
            record.skipped += 1
        if changed and kind != "runner_on_unreachable":
            record.changed += 1
            host.changed = True
        if failed:
            message = host.failed_items.get(data.get("task_uuid")) or _text(res.get("msg")) or "failed"
            unreachable = kind == "runner_on_unreachable"
            # After a failure, the playbook ends the host with a plain `fail` naming the reason (the end of the
            # rescue, or the unlock at the end of the run): the host's verdict, not a failure of that stage.
            closing = bool(host.failures) and not data.get("role") and _action_is(data, "fail")
            record.failed = record.failed or not (unreachable or closing)
            record.unreachable = record.unreachable or unreachable
            if record.message is None and not closing:
                record.message, record.failed_task = message, data.get("task")
            host.failures.append(Failure(
                stage=stage, task=data.get("task"), message=message, in_role=bool(data.get("role")),
                artifact_check=is_artifact_check(data), changed_before=host.changed, unreachable=unreachable,
                closing=closing))

    def _split_by_step(self, host, stage, res, start, changed):
        """An agent call whose steps belong to several stages (shipit.stages.STEP_STAGES): each stage but the
        last gets its steps' time and changes. Returns the last stage, when it started and whether its steps
        changed, for the task's own accounting (its failure is the last step run)."""
        steps = [s for s in res.get("steps") or [] if isinstance(s, dict) and s.get("ok") is not None]
        segments = []
        for step in steps:
            name = step_stage(stage, step.get("name"))
            seconds = step.get("seconds") if isinstance(step.get("seconds"), (int, float)) else 0.0
            if segments and segments[-1][0] == name:
                segments[-1][1] += seconds
                segments[-1][2] = segments[-1][2] or bool(step.get("changed"))
            else:
                segments.append([name, seconds, bool(step.get("changed"))])
        for name, seconds, changed in segments[:-1]:
            self._enter(host, name, start)
            record = host.stages[name]
            end = start + datetime.timedelta(seconds=seconds)
            record.touch(start, end)
            record.tasks += 1
            if changed:
                record.changed += 1
                host.changed = True
            start = end
        if len(segments) > 1:
            stage, changed = segments[-1][0], segments[-1][2]
            self._enter(host, stage, start)
        return stage, start, changed

    def _enter(self, host, stage, when):
        if host.current == stage:
            return
        self._leave(host)
        host.current = stage
        host.stages.setdefault(stage, StageRecord(stage))

    def _leave(self, host):
        if host.current is None:
            return
        record = host.stages[host.current]
        if record.rollback_role and not record.failed and host.rollback_target and not record.message:
            checks = [c.healthy for c in host.health if c.stage == record.name]
            state = ("healthy" if all(checks) else "NOT healthy") if checks else "health not checked"
            record.message = f"rolled back to {host.rollback_target.get('version')} ({state})"
        if self.on_stage_end:
            self.on_stage_end(host.name, record)
        record.leave()
        host.current = None

    def _collect(self, host, stage, data, res, kind):
        """Facts the report names: release id, health results, rollback target, lock holder, backup id."""
        if _role(data) == "rollback" and stage in ROLLBACK_STAGES:  # not a recovery's rollback
            host.rollback_ran = True
            host.stages[stage].rollback_role = True
        facts = res.get("ansible_facts") if isinstance(res.get("ansible_facts"), dict) else {}
        if isinstance(facts.get("shipit_outcome"), str):  # the playbook's own word for the host, if it has one
            host.playbook_outcome = facts["shipit_outcome"]
        if isinstance(facts.get("shipit_final_version"), str):  # the version the host runs at the end
            host.final_version = facts["shipit_final_version"] or None
        if facts.get("shipit_release_id") and stage == "plan":
            self.release_id = str(facts["shipit_release_id"])
        target = facts.get("__rollback_target")
        if isinstance(target, dict) and target.get("release_id"):
            host.rollback_target = {"version": target.get("version"), "release_id": target.get("release_id")}
        if kind == "runner_item_on_failed" and data.get("task_uuid") not in host.failed_items:
            host.failed_items[data.get("task_uuid")] = _text(res.get("msg"))
        if isinstance(facts.get("shipit_backup_id"), (str, int)) and facts["shipit_backup_id"]:
            host.backup_id = str(facts["shipit_backup_id"])
        for module, result, label in _module_results(data, res):
            self._collect_module(host, stage, kind, module, result, label or data.get("task"))

    def _collect_module(self, host, stage, kind, module, res, label):
        """What the report names from one module's result (a task's, or a step's of shipit.deploy.agent)."""
        if isinstance(res.get("holder"), str) and res["holder"]:
            host.lock_holder = _text(res["holder"], 300)
        backup_id = res.get("backup_id")
        if isinstance(backup_id, (str, int)) and backup_id:
            host.backup_id = str(backup_id)
        if module in ("release_ledger_info", "release_ledger"):
            args = (res.get("invocation") or {}).get("module_args") or {}
            self.app = self.app or args.get("app")
            if self.operation == "history" and isinstance(res.get("releases"), list):
                host.history = history_filters().history_rows([r for r in res["releases"] if isinstance(r, dict)])
        if self.operation == "history" and module == "deploy_lock" and kind == "runner_on_ok":
            host.history_lock = {"holder": _text(res.get("holder"), 300),
                                 "in_progress": _text(res.get("progress_text"))}
        if module == "health_check":
            if kind in ("runner_item_on_skipped", "runner_on_skipped") or "healthy" not in res:
                return
            last = res.get("last_failure") if isinstance(res.get("last_failure"), dict) else {}
            healthy = bool(res.get("healthy"))
            host.health.append(HealthResult(
                stage=stage, check=_text(label, 200),
                healthy=healthy, attempts=res.get("attempts"), elapsed=res.get("elapsed"),
                message=_text(res.get("msg")),
                assertion=None if healthy else _text(last.get("assertion"), 500),
                reason=None if healthy else _text(last.get("reason"), 500),
                error=None if healthy else _text(last.get("error"), 500)))

    def close(self):
        """The run ended: every host leaves its last stage."""
        for host in [self.controller, *self.hosts.values()]:
            self._leave(host)

    # -- the report ---------------------------------------------------------------------------------------
    def exit_code(self, runner_status="successful"):
        return self._codes(runner_status)[0]

    def playbook_outcomes(self):
        """The playbook's outcome of each host, from the run's stats (set_stats shipit_outcomes), or {}."""
        data = (self.stats or {}).get("artifact_data")
        outcomes = data.get("shipit_outcomes") if isinstance(data, dict) else None
        return outcomes if isinstance(outcomes, dict) else {}

    def _codes(self, runner_status):
        outcomes = self.playbook_outcomes()
        host_codes = {}
        for name, host in self.hosts.items():
            code = playbook_exit_code(outcomes.get(name))
            host_codes[name] = host_exit_code(self.operation, host) if code is None else code
        codes = list(host_codes.values())
        if self.controller.failures:
            codes.append(ExitCode.REFUSED)
        changed = sum(1 for h in self.hosts.values() if h.changed)
        no_hosts = not self.hosts and not self.controller.failures and runner_status == "successful"
        code = run_exit_code(codes, changed_hosts=changed, runner_failed=runner_status != "successful")
        if no_hosts and self.operation != "history":
            code = ExitCode.REFUSED  # nothing matched the inventory and the limit: nothing was deployed
        return code, host_codes, no_hosts

    def build(self, runner_status="successful", rc=0, started_at=None, finished_at=None, runner=None):
        code, host_codes, no_hosts = self._codes(runner_status)
        started_at = started_at or self.first_event
        finished_at = finished_at or self.last_event
        hosts = [self._host_dict(host, host_codes[name]) for name, host in self.hosts.items()]
        first_reason = next((h["rollback"]["reason"] for h in hosts if h["rollback"]), None)
        failing = next(({"host": h["name"], **c} for h in hosts for c in h["health"] if not c["healthy"]), None)
        summary = self._summary(code, hosts, no_hosts, runner_status)
        if (runner or {}).get("error") and not hosts and not self.controller.stages:
            summary += f": {_text(runner['error'], 500)}"
        stats = self.stats or {}
        report = {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "shipit", "version": __version__},
            "operation": self.operation,
            "env": self.env,
            "app": self.app,
            "version": self._version(hosts),
            "release_id": self.release_id,
            "check_mode": bool(self.check),
            "limit": self.limit,
            "started_at": _iso(started_at),
            "finished_at": _iso(finished_at),
            "duration": round((finished_at - started_at).total_seconds(), 3) if started_at and finished_at else 0.0,
            "exit_code": int(code),
            "outcome": OUTCOMES[code],
            "summary": summary,
            "plan": self.controller.stages["plan"].as_dict() if "plan" in self.controller.stages else None,
            "hosts": hosts,
            "failing_health_check": failing,
            "rollback_reason": first_reason,
            "backup_id": next((h["backup_id"] for h in hosts if h["backup_id"]), None),
            "lock_holder": next((h["lock_holder"] for h in hosts if h["lock_holder"]), None),
            "totals": {
                "hosts": len(hosts),
                "outcomes": {name: sum(1 for h in hosts if h["outcome"] == name) for name in OUTCOMES.values()},
                "changed_hosts": sum(1 for h in self.hosts.values() if h.changed),
                "unreachable_hosts": len(stats.get("dark") or {}),
                "tasks": sum(s["tasks"] for h in hosts for s in h["stages"]),
                "changed_tasks": sum(s["changed"] for h in hosts for s in h["stages"]),
                "failed_tasks": sum(len(h.failures) for h in self.hosts.values()) + len(self.controller.failures),
                "rescued": sum((stats.get("rescued") or {}).values()),
                "events": self.events,
            },
            "runner": {"status": runner_status, "rc": rc, **(runner or {})},
        }
        if self.controller.failures:
            report["plan"]["message"] = self.controller.failures[0].message
        return report

    def _version(self, hosts):
        if self.operation == "rollback":
            versions = {h["rollback"]["to_version"] for h in hosts if h["rollback"] and h["rollback"]["to_version"]}
            if len(versions) == 1:
                return versions.pop()
        return self.requested_version

    def _host_dict(self, host, code):
        stages = sorted(host.stages.values(), key=lambda s: (s.started is None, s.started or 0, stage_sort_key(s.name)))
        # The cause: the first failure that is not the playbook's closing verdict on the host.
        first = next((f for f in host.failures if not f.closing), host.failures[0] if host.failures else None)
        rollback = None
        if host.rollback_ran or code in (ExitCode.ROLLED_BACK, ExitCode.ROLLBACK_FAILED):
            after = [c for c in host.health if c.stage in ROLLBACK_STAGES]
            error = next((f.message for f in host.failures if f.stage in ROLLBACK_STAGES and f.in_role), None)
            rollback = {
                "automatic": self.operation != "rollback",
                "error": error,
                "reason": first.message if first and self.operation != "rollback" else None,
                "to_version": (host.rollback_target or {}).get("version"),
                "to_release_id": (host.rollback_target or {}).get("release_id"),
                "healthy": (all(c.healthy for c in after) and code != ExitCode.ROLLBACK_FAILED) if after else None,
            }
        result = {
            "name": host.name,
            "exit_code": int(code),
            "outcome": OUTCOMES[code],
            "changed": host.changed,
            "stages": [s.as_dict() for s in stages],
            "failure": first.as_dict() if first else None,
            "health": [c.as_dict() for c in host.health],
            "rollback": rollback,
            "backup_id": host.backup_id,
            "lock_holder": host.lock_holder,
            "playbook_outcome": host.playbook_outcome,
            "final_version": host.final_version,
        }
        if host.history is not None:
            result["history"] = host.history
        return result

    def _summary(self, code, hosts, no_hosts, runner_status):
        if self.operation == "deploy":
            subject = " ".join(x for x in (self.app, self.requested_version) if x)
            what = f"deploy of {subject} to {self.env}" if subject else f"deploy to {self.env}"
        else:
            what = f"{self.operation} of {self.app}" if self.app else self.operation
            if self.operation == "rollback" and self.requested_version:
                what += f" to {self.requested_version}"
            what += f" on {self.env}"
        if self.check:
            what += " (check mode)"
        if no_hosts:
            return f"{what}: no host matched the inventory and the limit, nothing was done"
        if self.controller.failures:
            return _text(f"{what}: refused before any change: {self.controller.failures[0].message}", 4000)
        if code == ExitCode.OK:
            if runner_status != "successful":
                return f"{what}: the run ended {runner_status}"
            done = "check passed, nothing was changed" if self.check else OK_TEXT.get(self.operation, "done")
            rolled = [h["name"] for h in hosts if h["outcome"] == "rolled_back"]
            return f"{what}: {done}" + (f" ({', '.join(rolled)} rolled back)" if rolled else "")
        text = f"{what}: {DESCRIPTIONS[code]}"
        failed = [h for h in hosts if h["failure"]]
        if failed:
            h = failed[0]
            text += f"; {h['name']} failed in {h['failure']['stage']}: {h['failure']['message']}"
            rb = h["rollback"]
            if rb and rb["error"] and self.operation != "rollback":
                text += f"; the rollback to {rb['to_version'] or 'the previous release'} failed: {rb['error']}"
            elif rb and rb["to_version"] and self.operation != "rollback":
                text += f"; rolled back to {rb['to_version']} ({'healthy' if rb['healthy'] else 'NOT healthy'})"
            if len(failed) > 1:
                text += f" (and {len(failed) - 1} more host(s))"
        if runner_status not in ("successful", "failed"):
            text += f" (runner {runner_status})"
        return _text(text, 4000)


# -- reading kept artifacts ---------------------------------------------------------------------------------
def load_events(artifact_dir):
    """The events the runner kept in <artifact_dir>/job_events/, in the order they happened."""
    events = []
    for path in Path(artifact_dir, "job_events").glob("*.json"):
        try:
            events.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(events, key=lambda e: e.get("counter", 0))


# -- markdown -----------------------------------------------------------------------------------------------
_MARK = {"ok": "✅", "changed": "✅", "skipped": "⏭️", "failed": "❌", "unreachable": "⛔"}
_OUTCOME_MARK = {"ok": "✅", "refused": "🛑", "artifact_error": "📦", "failed": "❌", "rolled_back": "↩️",
                 "rollback_failed": "🚨"}


def _cell(text):
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def to_markdown(report):
    """A human summary of the report, suitable for $GITHUB_STEP_SUMMARY or a pull-request comment."""
    title = (f"## {_OUTCOME_MARK.get(report['outcome'], '')} shipit {report['operation']} "
             f"{report.get('app') or ''} {report.get('version') or ''} → {report['env']}: "
             f"{report['outcome'].replace('_', ' ')} (exit {report['exit_code']})")
    lines = [" ".join(title.split()), "", _cell(report["summary"]), ""]
    facts = [f"release `{report['release_id']}`" if report.get("release_id") else None,
             f"{report['duration']:.1f}s",
             f"{report['totals']['hosts']} host(s)",
             "check mode" if report["check_mode"] else None,
             f"limit `{report['limit']}`" if report.get("limit") else None]
    lines += [" · ".join(f for f in facts if f), ""]
    stage_names = []
    for host in report["hosts"]:
        for stage in host["stages"]:
            if stage["name"] not in stage_names:
                stage_names.append(stage["name"])
    if report["hosts"]:
        lines += ["| host | outcome | " + " | ".join(stage_names) + " |",
                  "|---|---|" + "---|" * len(stage_names)]
        for host in report["hosts"]:
            by_name = {s["name"]: s for s in host["stages"]}
            cells = [f"{_MARK.get(by_name[n]['status'], '')} {by_name[n]['status']} {by_name[n]['duration']:.1f}s"
                     if n in by_name else "" for n in stage_names]
            lines.append(f"| {_cell(host['name'])} | {_OUTCOME_MARK.get(host['outcome'], '')} {host['outcome']} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    checks = [(h["name"], c) for h in report["hosts"] for c in h["health"]]
    if checks:
        lines += ["### Health checks", "", "| host | stage | check | result | attempts | failing assertion |",
                  "|---|---|---|---|---|---|"]
        for name, c in checks:
            failing = f"{c['assertion']}: {c['reason']}" if c.get("assertion") else (c.get("error") or "")
            lines.append(f"| {_cell(name)} | {c['stage']} | {_cell(c['check'])} | "
                         f"{'✅ healthy' if c['healthy'] else '❌ unhealthy'} | {c['attempts'] or ''} | {_cell(failing)} |")
        lines.append("")
    problems = [h for h in report["hosts"] if h["failure"] or h["rollback"] or h["lock_holder"] or h["backup_id"]]
    plan = report.get("plan") or {}
    if problems or plan.get("status") == "failed":
        lines += ["### Details", ""]
        if plan.get("status") == "failed":
            lines.append(f"- plan: refused: {_cell(plan.get('message'))}")
        for h in problems:
            if h["failure"]:
                lines.append(f"- **{_cell(h['name'])}** failed in `{h['failure']['stage']}` "
                             f"(task \"{_cell(h['failure']['task'])}\"): {_cell(h['failure']['message'])}")
            if h["rollback"]:
                rb = h["rollback"]
                if rb["error"]:
                    lines.append(f"- 🚨 **{_cell(h['name'])}** the rollback to {rb['to_version'] or '?'} "
                                 f"(release {rb['to_release_id'] or '?'}) FAILED: {_cell(rb['error'])}")
                else:
                    state = {True: "healthy", False: "**not healthy**", None: "not checked"}[rb["healthy"]]
                    lines.append(f"- **{_cell(h['name'])}** rolled back to {rb['to_version'] or '?'} "
                                 f"(release {rb['to_release_id'] or '?'}): {state}")
            if h["lock_holder"]:
                lines.append(f"- **{_cell(h['name'])}** lock: {_cell(h['lock_holder'])}")
            if h["backup_id"]:
                lines.append(f"- **{_cell(h['name'])}** backup: `{_cell(h['backup_id'])}`")
        lines.append("")
    for h in report["hosts"]:
        if h.get("history") is not None:
            lines += [f"### History on {_cell(h['name'])}", "",
                      "| release | version | status | when | who | git sha | backup | reason |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in h["history"]:
                cells = [r.get(k) for k in ("release_id", "version", "status", "when", "deployed_by")]
                cells += [(r.get("git_sha") or "")[:12], r.get("backup_id"), r.get("reason")]
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            lines.append("")
    runner = report["runner"]
    if runner.get("artifact_dir"):
        lines.append(f"<sub>runner {runner['status']} (rc {runner['rc']}), artifacts: `{runner['artifact_dir']}`</sub>")
    return "\n".join(lines).rstrip() + "\n"
