"""shipit: deploy, roll back, back up, restore and show history with the shipit.deploy collection.

  shipit deploy   --env ENV --version X [--limit HOSTS] [--check]
  shipit rollback --env ENV [--to VERSION_OR_RELEASE]
  shipit backup   --env ENV
  shipit restore  --env ENV
  shipit history  --env ENV [--json]
  shipit report   RUN_DIR            (rebuild report.json and report.md from a run's kept artifacts)
  shipit next-version [--pre LABEL] / shipit release-notes   (the deploy workflow's release tag)

Every command runs the collection's playbook through ansible-runner with inventories/ENV, prints one line
per host and stage as the run goes, keeps the runner's artifacts in the run directory (.shipit/runs/... or
--artifacts-dir) and writes report.json and report.md there. Exit codes: see `shipit --help-exit-codes`.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from . import __version__, release
from .exitcodes import DESCRIPTIONS, ExitCode
from .progress import Progress
from .report import ReportBuilder, history_filters, load_events, to_markdown
from .runner import (ShipitError, find_inventory, find_playbook, find_project, new_run_dir, run_playbook,
                     runner_output_tail, vault_password_file)

RUN_META = "shipit-run.json"


class _Parser(argparse.ArgumentParser):
    """Bad usage is bad input: exit 1 (argparse's default 2 means "artifact problem" here)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.REFUSED), f"{self.prog}: error: {message}\n")


def _exit_codes_help():
    return "exit codes:\n" + "\n".join(f"  {int(code)}  {DESCRIPTIONS[code]}" for code in ExitCode)


def build_parser():
    parser = _Parser(prog="shipit", description=__doc__.split("\n\n", 1)[0],
                     epilog=_exit_codes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tool-version", action="version", version=f"shipit {__version__}")
    sub = parser.add_subparsers(dest="operation", required=True, parser_class=_Parser)

    def common(cmd, json_help="print report.json on stdout at the end"):
        cmd.add_argument("--env", required=True, help="environment: the inventory inventories/ENV")
        cmd.add_argument("--limit", help="hosts or groups to run on (Ansible's --limit; the controller's plan "
                                         "play always runs)")
        cmd.add_argument("--check", action="store_true", help="Ansible check mode: report, change nothing")
        cmd.add_argument("-e", "--extra-var", action="append", default=[], metavar="KEY=VALUE",
                         help="an extra variable for the playbook (repeatable); never a secret: use the vault")
        cmd.add_argument("--vault-password-file", help="vault password file (default: $SHIPIT_VAULT_PASSWORD "
                                                       "if set, written to a private temporary file)")
        cmd.add_argument("--artifacts-dir", help="run directory (new or empty) instead of .shipit/runs/<time>-...")
        cmd.add_argument("--inventories", default=os.environ.get("SHIPIT_INVENTORIES"),
                         help="directory holding the environments' inventories (default ./inventories, then "
                              "the collection's)")
        cmd.add_argument("--project-dir", default=os.environ.get("SHIPIT_PROJECT_DIR"),
                         help="the shipit.deploy collection (default: this checkout or the installed one)")
        cmd.add_argument("--timeout", type=int, help="cancel the run after this many seconds")
        cmd.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
        cmd.add_argument("--json", action="store_true", help=json_help)
        cmd.add_argument("-v", "--verbose", action="count", default=0, help="Ansible verbosity (in the artifacts)")
        return cmd

    deploy = common(sub.add_parser("deploy", help="deploy a version", epilog=_exit_codes_help(),
                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    deploy.add_argument("--version", required=True, help="version to deploy (shipit_version)")
    deploy.add_argument("--git-sha", help="commit deployed (default $GITHUB_SHA or HEAD of the current checkout)")
    deploy.add_argument("--deployed-by", help="who deploys (default $GITHUB_ACTOR or $USER)")
    rollback = common(sub.add_parser("rollback", help="roll back to the newest good release or a named one"))
    rollback.add_argument("--to", help="version or release id (default: the newest good release)")
    rollback.add_argument("--with-data", action="store_true",
                          help="also restore the database backup taken while that release was live")
    common(sub.add_parser("backup", help="back up the application's data (playbooks/backup.yml)"))
    restore = common(sub.add_parser("restore", help="restore the application's data (playbooks/restore.yml)"))
    restore.add_argument("--backup", help="backup id, or 'latest' (shipit_backup)")
    restore.add_argument("--test", action="store_true",
                         help="prove that the backup restores, into a scratch copy: the live data is untouched")
    maintenance = common(sub.add_parser("maintenance", help="serve the maintenance page, or the app again "
                                                            "(playbooks/maintenance.yml, needs the front proxy)"))
    maintenance.add_argument("state", choices=["on", "off"], help="on: the proxy answers 503 with the page; off: the app")
    common(sub.add_parser("history", help="print each host's release ledger"),
           json_help='print the history of every host as JSON on stdout: {"hosts": {HOST: {"releases": [...], '
                     '"lock": {...}}}, ...} (the rows of playbooks/history.yml -e shipit_history_format=json)')
    report = sub.add_parser("report", help="rebuild report.json and report.md from a run directory")
    report.add_argument("run_dir")
    report.add_argument("--json", action="store_true", help="print report.json on stdout")
    nxt = sub.add_parser("next-version", help="the next semantic version from the commits since the last vX.Y.Z tag")
    nxt.add_argument("--pre", help="a pre-release label to append, e.g. pr.12.3 (gives 1.3.0-pr.12.3)")
    notes = sub.add_parser("release-notes", help="release notes from the commits since the last vX.Y.Z tag")
    notes.add_argument("--version", help="the version the notes are for (default: next-version)")
    notes.add_argument("--output", help="write the notes to this file instead of stdout")
    return parser


def release_command(args, out=None):
    out = out or sys.stdout
    tag = release.last_tag()
    commits = release.commits_since(tag)
    version = release.next_version(tag, commits)
    if args.operation == "next-version":
        if args.pre:
            if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z.-]*", args.pre):
                raise ShipitError(f"--pre {args.pre!r}: letters, digits, '.' and '-' only")
            version += f"-{args.pre}"
        out.write(version + "\n")
        return 0
    text = release.release_notes(args.version or version, tag, commits)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        out.write(text)
    return 0


def _extra_vars(pairs):
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ShipitError(f"-e {pair!r}: expected KEY=VALUE with a variable name as KEY")
        result[key] = value
    return result


def _git_sha():
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    if not shutil.which("git"):
        return None
    proc = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, text=True,
                          check=False, timeout=10)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def operation_vars(args):
    """The playbook's inputs for the operation (the collection's contract, README "Inputs")."""
    extravars = _extra_vars(args.extra_var)
    if args.operation == "deploy":
        extravars["shipit_version"] = args.version
        sha = args.git_sha or _git_sha()
        if sha:
            extravars["shipit_git_sha"] = sha
        extravars["shipit_deployed_by"] = (args.deployed_by or os.environ.get("GITHUB_ACTOR")
                                           or os.environ.get("USER") or "shipit")
    elif args.operation == "rollback":
        if args.to:
            extravars["shipit_rollback_to"] = args.to
        if args.with_data:
            extravars["shipit_rollback_restore_db"] = True
    elif args.operation == "maintenance":
        extravars["shipit_maintenance"] = args.state
    elif args.operation == "restore":
        if args.backup:
            extravars["shipit_backup"] = args.backup
        if args.test:
            extravars["shipit_restore_test"] = True
    return extravars


def _limit(playbook, limit):
    """Ansible's --limit for the run. A playbook's controller play (deploy.yml's plan: the release id, the run's
    id) runs on localhost, which a limit of target hosts would skip: the limit keeps localhost then."""
    if not limit:
        return None
    return f"{limit},localhost" if has_controller_play(playbook) else limit


def has_controller_play(playbook):
    try:
        plays = yaml.safe_load(Path(playbook).read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError):
        return False
    return any(isinstance(play, dict) and str(play.get("hosts", "")).strip() in ("localhost", "127.0.0.1")
               for play in plays if isinstance(plays, list))


def _write_report(run_dir, report):
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (run_dir / "report.md").write_text(to_markdown(report), encoding="utf-8")


def _github_output(run_dir, report):
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"run-dir={run_dir}\nreport-json={run_dir / 'report.json'}\n"
                     f"report-md={run_dir / 'report.md'}\nexit-code={report['exit_code']}\n"
                     f"outcome={report['outcome']}\nrelease-id={report.get('release_id') or ''}\n")


def history_document(report, locks):
    """What `shipit history --json` prints: every host's ledger rows and deploy lock (locks: {host: lock}, see
    HostState.history_lock), and the run's verdict."""
    hosts = {}
    for h in report["hosts"]:
        hosts[h["name"]] = {"releases": h.get("history"), "lock": locks.get(h["name"]),
                            "error": (h.get("failure") or {}).get("message") if h.get("history") is None else None}
    return {"app": report.get("app"), "env": report.get("env"), "exit_code": report["exit_code"],
            "outcome": report["outcome"], "hosts": hosts}


def _print_history(report, locks, out):
    for h in report["hosts"]:
        out.write(f"\n{h['name']}\n")
        if h.get("history") is None:
            out.write(f"  the ledger was not read: {(h.get('failure') or {}).get('message') or 'see the report'}\n")
            continue
        out.write((history_filters().history_table(h["history"]) if h["history"] else "No release recorded yet.")
                  + "\n")
        lock = locks.get(h["name"]) or {}
        for label, key in (("Lock", "holder"), ("In progress or INTERRUPTED", "in_progress")):
            if lock.get(key):
                out.write(f"{label}: {lock[key]}\n")


def run_operation(args, out=None):
    out = out or sys.stdout
    started_clock = time.monotonic()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    project = find_project(args.project_dir)
    playbook = find_playbook(args.operation, project)
    inventory = find_inventory(args.env, project, args.inventories)
    extravars = operation_vars(args)
    run_dir = new_run_dir(args.operation, args.env, args.artifacts_dir)
    ident = run_dir.name
    version = getattr(args, "version", None) or getattr(args, "to", None)
    meta = {
        "operation": args.operation, "env": args.env, "version": version, "limit": args.limit,
        "check": args.check, "project": str(project), "playbook": str(playbook), "inventory": str(inventory),
        "ident": ident, "started_at": started_at.isoformat(timespec="seconds"),
        "extra_vars": sorted(extravars),  # names only: values are in env/extravars, secrets never are
        "shipit_version": __version__,
    }
    (run_dir / RUN_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    # With --json, stdout carries the report only: the progress goes to stderr.
    progress = Progress(stream=sys.stderr if args.json else out, interactive=False if args.plain else None,
                        started=started_clock)
    builder = ReportBuilder(args.operation, args.env, version=version, check=args.check, limit=args.limit,
                            on_stage_end=progress.stage_end, on_task_start=progress.task_start)
    what = f"{args.operation} {version or ''}".replace("  ", " ").strip()
    progress.line(f"shipit {what} → {args.env} ({inventory}), run {run_dir}")

    stop = {"requested": False}

    def request_stop(signum, _frame):
        stop["requested"] = True
        progress.line(f"{signal.Signals(signum).name}: cancelling the run")

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    status, rc, error = "failed", None, None
    try:
        with vault_password_file(args.vault_password_file) as vault_file:
            runner = run_playbook(
                project=project, playbook=playbook, inventory=inventory, run_dir=run_dir, ident=ident,
                extravars=extravars, limit=_limit(playbook, args.limit), check=args.check,
                vault_file=vault_file, verbosity=args.verbose, timeout=args.timeout,
                event_handler=lambda event: builder.feed(event) or True,
                cancel_callback=lambda: stop["requested"])
        status, rc = runner.status, runner.rc
    except ShipitError:
        raise
    except Exception as exc:  # the runner itself broke: report what happened so far
        error = f"{type(exc).__name__}: {exc}"
        status = "error"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        progress.done()
    builder.close()
    finished_at = datetime.datetime.now(datetime.timezone.utc)
    if error is None and status != "successful" and not builder.hosts and not builder.controller.stages:
        error = runner_output_tail(run_dir / "artifacts" / ident)  # Ansible stopped before its first task
    report = builder.build(runner_status=status, rc=rc, started_at=started_at, finished_at=finished_at,
                           runner={"ident": ident, "run_dir": str(run_dir),
                                   "artifact_dir": str(run_dir / "artifacts" / ident), "error": error})
    _write_report(run_dir, report)
    _github_output(run_dir, report)
    locks = {name: host.history_lock for name, host in builder.hosts.items()}
    if args.operation == "history" and not args.json:
        _print_history(report, locks, out)
    if error:
        progress.line(f"ansible-runner failed: {error}")
    progress.line(f"{report['summary']} (exit {report['exit_code']})")
    progress.line(f"report: {run_dir / 'report.md'}")
    if args.json:
        document = history_document(report, locks) if args.operation == "history" else report
        out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    out.flush()
    return report["exit_code"]


def rebuild_report(args, out=None):
    out = out or sys.stdout
    run_dir = Path(args.run_dir).resolve()
    try:
        meta = json.loads((run_dir / RUN_META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShipitError(f"{run_dir} is not a shipit run directory ({RUN_META}: {exc})") from exc
    artifact_dir = run_dir / "artifacts" / meta["ident"]
    builder = ReportBuilder(meta["operation"], meta["env"], version=meta.get("version"), check=meta.get("check"),
                            limit=meta.get("limit"))
    for event in load_events(artifact_dir):
        builder.feed(event)
    builder.close()
    status = (artifact_dir / "status").read_text().strip() if (artifact_dir / "status").exists() else "failed"
    rc_text = (artifact_dir / "rc").read_text().strip() if (artifact_dir / "rc").exists() else ""
    report = builder.build(runner_status=status, rc=int(rc_text) if rc_text.lstrip("-").isdigit() else None,
                           runner={"ident": meta["ident"], "run_dir": str(run_dir), "artifact_dir": str(artifact_dir)})
    _write_report(run_dir, report)
    out.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n" if args.json else report["summary"] + "\n")
    return report["exit_code"]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.operation == "report":
            return rebuild_report(args)
        if args.operation in ("next-version", "release-notes"):
            return release_command(args)
        return run_operation(args)
    except ShipitError as exc:
        sys.stderr.write(f"shipit: error: {exc}\n")
        return int(ExitCode.REFUSED)


if __name__ == "__main__":
    sys.exit(main())
