"""How shipit is delivered and driven: GitHub workflows, the post-receive hook, the execution environment,
the package, release versions and notes."""

import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml
from shipit_fixtures import REPO

from shipit import release

BIN = Path(sys.executable).parent
WORKFLOWS = REPO / ".github" / "workflows"


def _run(*argv, cwd=REPO, env=None, timeout=120):
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False, env={**os.environ, **(env or {})})


def test_workflows_are_valid_github_workflows():
    proc = _run(BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows",
                WORKFLOWS / "ci.yml", WORKFLOWS / "deploy.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_workflow_check_catches_a_broken_workflow(tmp_path):
    broken = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())
    del broken["jobs"]["deploy"]["runs-on"]
    broken["jobs"]["deploy"]["timeout-minutes"] = "an hour"
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    proc = _run(BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", path)
    assert proc.returncode == 1, proc.stdout


def _steps(workflow, job):
    return yaml.safe_load((WORKFLOWS / workflow).read_text())["jobs"][job]["steps"]


def test_ci_runs_lint_unit_and_molecule():
    jobs = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())["jobs"]
    runs = {job: " ".join(step.get("run", "") for step in spec["steps"]) for job, spec in jobs.items()}
    assert "yamllint --strict ." in runs["lint"] and "ansible-lint --offline --profile production" in runs["lint"]
    assert 'pytest -m "not lab"' in runs["unit"]
    assert "molecule test --scenario-name" in runs["molecule"] and "pytest -m lab" in runs["molecule"]


def test_deploy_workflow_deploys_with_shipit_one_run_per_environment():
    workflow = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as true
    assert triggers["pull_request"]["branches"] == ["main"] and triggers["push"]["branches"] == ["main"]
    job = workflow["jobs"]["deploy"]
    env_expr = "github.event_name == 'pull_request' && 'staging' || inputs.environment || 'production'"
    assert job["environment"]["name"] == f"${{{{ {env_expr} }}}}"
    assert job["concurrency"] == {"group": f"shipit-deploy-${{{{ {env_expr} }}}}", "cancel-in-progress": False}
    steps = {step["name"]: step for step in job["steps"]}
    assert steps["Deploy"]["run"].startswith('shipit deploy --env "$SHIPIT_ENV" --version "$VERSION"')
    assert steps["Deploy"]["env"]["SHIPIT_VAULT_PASSWORD"] == "${{ secrets.SHIPIT_VAULT_PASSWORD }}"
    summary = steps["Publish the report to the step summary"]
    assert summary["if"] == "always()" and 'report.md" >> "$GITHUB_STEP_SUMMARY"' in summary["run"]
    upload = steps["Upload the report and the runner artifacts"]
    assert upload["uses"].startswith("actions/upload-artifact@") and upload["if"] == "always()"
    tag = steps["Tag the release with its notes"]
    assert tag["if"] == "success() && env.SHIPIT_ENV == 'production'"
    assert "shipit release-notes" in tag["run"] and 'git push origin "v$VERSION"' in tag["run"]
    assert "shipit next-version" in steps["Choose the version"]["run"]


def _git(*args, cwd):
    proc = _run("git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture()
def pushed(tmp_path):
    """A bare repository with the hook installed (a stub in place of shipit), and a clone to push from."""
    stub = tmp_path / "shipit-stub"
    stub.write_text('#!/bin/sh\n{ echo "cwd=$PWD"; for a in "$@"; do echo "arg=$a"; done; } > "$(dirname "$0")/calls"\n'
                    "exit 4\n")
    stub.chmod(0o755)
    _git("init", "-q", "--bare", "app.git", cwd=tmp_path)
    proc = _run(REPO / "scripts" / "install-post-receive-hook", "--repo", tmp_path / "app.git", "--env", "production",
                "--shipit", stub, "--build", 'echo "built $SHIPIT_VERSION" > BUILT', "--", "--limit", "ci1")
    assert proc.returncode == 0, proc.stderr
    _git("clone", "-q", "app.git", "work", cwd=tmp_path)
    work = tmp_path / "work"
    (work / "inventories" / "production").mkdir(parents=True)
    (work / "inventories" / "production" / "hosts.yml").write_text("---\n")
    _git("add", ".", cwd=work)
    _git("commit", "-qm", "feat: first", cwd=work)
    _git("tag", "v1.4.0", cwd=work)
    return tmp_path, work


def test_post_receive_hook_deploys_a_push_to_main_with_the_shipit_command(pushed):
    tmp_path, work = pushed
    proc = _run("git", "push", "origin", "HEAD:refs/heads/main", "--tags", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "shipit: deploy of 1.4.0 exited 4" in proc.stderr  # the pusher sees the outcome
    calls = (tmp_path / "calls").read_text().splitlines()
    sha = _git("rev-parse", "HEAD", cwd=work).strip()
    args = [line[4:] for line in calls if line.startswith("arg=")]
    assert args[:7] == ["deploy", "--env", "production", "--version", "1.4.0", "--git-sha", sha]
    assert args[-3:] == ["--plain", "--limit", "ci1"]
    checkout = Path(calls[0][4:])
    assert checkout == tmp_path / "app.git" / "shipit" / "checkouts" / sha
    assert (checkout / "inventories" / "production" / "hosts.yml").exists()
    assert (checkout / "BUILT").read_text() == "built 1.4.0\n"


def test_post_receive_hook_ignores_other_branches_and_keeps_a_foreign_hook(pushed, tmp_path):
    tmp, work = pushed
    proc = _run("git", "push", "origin", "HEAD:refs/heads/feature", cwd=work)
    assert proc.returncode == 0 and not (tmp / "calls").exists()
    other = tmp_path / "other.git"
    _git("init", "-q", "--bare", str(other), cwd=tmp_path)
    (other / "hooks" / "post-receive").write_text("#!/bin/sh\necho mine\n")
    proc = _run(REPO / "scripts" / "install-post-receive-hook", "--repo", other, "--env", "production",
                "--shipit", tmp / "shipit-stub")
    assert proc.returncode == 1 and "is not shipit's" in proc.stderr


def test_execution_environment_is_ansible_builder_v3_with_this_collection():
    ee = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    pins = dict(line.split("==") for line in (REPO / "requirements-dev.txt").read_text().splitlines()
                if line.startswith(("ansible-core==", "ansible-runner==")))
    assert ee["version"] == 3
    assert ee["dependencies"]["ansible_core"]["package_pip"] == f"ansible-core=={pins['ansible-core']}"
    assert ee["dependencies"]["ansible_runner"]["package_pip"] == f"ansible-runner=={pins['ansible-runner']}"
    tarball = f"shipit-deploy-{galaxy['version']}.tar.gz"
    assert [f["src"] for f in ee["additional_build_files"]] == [f"dist/{tarball}"]
    collections = {c["name"]: c.get("version") for c in ee["dependencies"]["galaxy"]["collections"]}
    assert collections.pop(f"/build/collections/{tarball}") is None
    required = {c["name"]: c["version"] for c in yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]}
    assert collections == required


def test_package_declares_the_shipit_console_script_and_stays_out_of_the_collection(tmp_path):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"shipit": "shipit.cli:main"}
    assert any(dep.startswith("ansible-runner") for dep in project["project"]["dependencies"])
    proc = _run(BIN / "ansible-galaxy", "collection", "build", "--output-path", tmp_path, REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [tarball] = tmp_path.glob("shipit-deploy-*.tar.gz")
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert not [n for n in names if n.split("/")[0] in ("shipit", "pyproject.toml", "execution-environment.yml")
                or n == "docs/report-schema.json" or ".egg-info" in n]


@pytest.mark.parametrize("subjects, tag, expected", [
    ([], "v1.2.3", "1.2.3"),
    (["fix: a bug"], "v1.2.3", "1.2.4"),
    (["docs: words", "feat(cli): a flag"], "v1.2.3", "1.3.0"),
    (["feat!: a new contract"], "v1.2.3", "2.0.0"),
    (["feat!: a new contract"], "v0.4.1", "0.5.0"),
    (["chore: x"], None, "0.1.0"),
])
def test_next_version(subjects, tag, expected):
    assert release.next_version(tag, [("0" * 40, s, "") for s in subjects]) == expected


def test_breaking_change_footer_and_notes_from_a_real_history(tmp_path):
    if not shutil.which("git"):
        pytest.fail("git is needed")
    _git("init", "-q", cwd=tmp_path)
    _git("commit", "-q", "--allow-empty", "-m", "feat: first", cwd=tmp_path)
    _git("tag", "v1.0.0", cwd=tmp_path)
    _git("commit", "-q", "--allow-empty", "-m", "fix: the health check", cwd=tmp_path)
    _git("commit", "-q", "--allow-empty", "-m", "refactor: ledger\n\nBREAKING CHANGE: new format", cwd=tmp_path)
    tag = release.last_tag(cwd=tmp_path)
    commits = release.commits_since(tag, cwd=tmp_path)
    assert tag == "v1.0.0" and [c[1] for c in commits] == ["fix: the health check", "refactor: ledger"]
    version = release.next_version(tag, commits)
    assert version == "2.0.0"
    notes = release.release_notes(version, tag, commits)
    assert notes.startswith("## 2.0.0\n\nChanges since v1.0.0:")
    assert "### Breaking changes\n\n- refactor: ledger (" in notes and "### Fixes\n\n- fix: the health check (" in notes
    proc = _run(sys.executable, "-m", "shipit", "next-version", "--pre", "pr.7.2", cwd=tmp_path,
                env={"PYTHONPATH": str(REPO)})
    assert proc.stdout == "2.0.0-pr.7.2\n", proc.stderr
