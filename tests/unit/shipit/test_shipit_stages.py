"""The stage of a task comes from its file (shipit/stages.py): the table, case by case."""

import pytest
import shipit_fixtures  # noqa: F401  (the checkout's shipit on sys.path)

from shipit.stages import is_artifact_check, stage_of

ROLE = "/repo/collections/ansible_collections/shipit/deploy/roles"
PB = "/repo/playbooks"


def ev(path, role=None, pattern="app", action="ansible.builtin.command", task="A task"):
    return {"task_path": path, "role": role, "play_pattern": pattern, "resolved_action": action, "task": task}


@pytest.mark.parametrize("event, current, expected", [
    # The controller's play.
    (ev(f"{PB}/deploy.yml:18", pattern="localhost"), None, "plan"),
    (ev(f"{PB}/stages/plan.yml:5", pattern="localhost"), "plan", "plan"),
    # Stage files are their stage.
    (ev(f"{PB}/stages/preflight.yml:3"), None, "preflight"),
    (ev(f"{PB}/stages/lock.yml:20"), "preflight", "lock"),
    (ev(f"{PB}/stages/record.yml:2"), "verify", "record"),
    (ev(f"{PB}/stages/rollback.yml:4"), "verify", "rollback"),
    (ev(f"{PB}/stages/unlock.yml:4"), "notify", "unlock"),
    # ...except the ones that serve several stages: the ledger read and the "in progress" record.
    (ev(f"{PB}/stages/ledger.yml:3"), "preflight", "preflight"),
    (ev(f"{PB}/stages/progress.yml:4"), "switch", "switch"),
    (ev(f"{PB}/stages/progress.yml:4"), None, "lock"),
    # Kind roles: the small interface.
    (ev(f"{ROLE}/systemd_service/tasks/layout.yml:2", "systemd_service"), "preflight", "release"),
    (ev(f"{ROLE}/systemd_service/tasks/release.yml:2", "systemd_service"), "release", "release"),
    (ev(f"{ROLE}/systemd_service/tasks/migrate.yml:4", "systemd_service"), "release", "migrate"),
    (ev(f"{ROLE}/systemd_service/tasks/switch.yml:3", "systemd_service"), "migrate", "switch"),
    (ev(f"{ROLE}/systemd_service/tasks/prune.yml:3", "systemd_service"), "switch", "switch"),
    (ev(f"{ROLE}/compose_stack/tasks/images.yml:3", "compose_stack"), "release", "release"),
    (ev(f"{ROLE}/compose_stack/tasks/switch_service.yml:3", "compose_stack"), "switch", "switch"),
    # A helper file of a kind role belongs to the stage the host is in.
    (ev(f"{ROLE}/compose_stack/tasks/wait.yml:3", "compose_stack"), "switch", "switch"),
    (ev(f"{ROLE}/compose_stack/tasks/wait.yml:3", "compose_stack"), "preflight", "release"),
    # Roles that are a stage.
    (ev(f"{ROLE}/health/tasks/main.yml:2", "health"), "switch", "verify"),
    (ev(f"{ROLE}/db_backup/tasks/main.yml:2", "db_backup"), "rollout", "backup"),
    (ev(f"{ROLE}/db_backup/tasks/restore.yml:2", "db_backup"), None, "restore"),
    (ev(f"{ROLE}/db_backup/tasks/restore_test.yml:2", "db_backup"), "backup", "backup"),
    # A role's argument validation carries the path of the including task: the role decides.
    (ev(f"{PB}/deploy.yml:29", "shipit.deploy.health", action="ansible.builtin.validate_argument_spec"), "switch", "verify"),
    (ev(f"{PB}/deploy.yml:29", "systemd_service", action="ansible.builtin.validate_argument_spec"), "backup", "release"),
    (ev(f"{PB}/restore.yml:14", "db_backup", action="ansible.builtin.validate_argument_spec",
        task="Validating arguments against arg spec 'restore_test' - Prove that a backup restores"), None, "restore"),
    # A rollback runs the kind and health roles again: those tasks are the rollback's.
    (ev(f"{ROLE}/rollback/tasks/main.yml:3", "rollback"), "rollback", "rollback"),
    (ev(f"{ROLE}/systemd_service/tasks/activate.yml:3", "systemd_service"), "rollback", "rollback"),
    (ev(f"{ROLE}/systemd_service/tasks/switch.yml:3", "systemd_service"), "rollback", "rollback"),
    (ev(f"{ROLE}/health/tasks/main.yml:2", "health"), "rollback", "rollback"),
    (ev(f"{ROLE}/db_backup/tasks/restore.yml:2", "db_backup"), "rollback", "rollback"),
    (ev(f"{ROLE}/health/tasks/main.yml:2", "health"), "fleet_rollback", "fleet_rollback"),
    (ev(f"{ROLE}/rollback/tasks/main.yml:3", "rollback"), "recover", "recover"),
    # ...but a stage file after it is that stage.
    (ev(f"{PB}/stages/notify.yml:10"), "rollback", "notify"),
    # Include wrappers in a playbook belong to no stage.
    (ev(f"{PB}/deploy.yml:110", action="ansible.builtin.include_role"), "backup", None),
    # Tasks written in other playbooks.
    (ev(f"{PB}/history.yml:8", action="shipit.deploy.release_ledger_info"), None, "history"),
    (ev(f"{PB}/backup.yml:8", action="ansible.builtin.debug"), None, "backup"),
])
def test_stage_of(event, current, expected):
    assert stage_of(event, current) == expected


@pytest.mark.parametrize("task, expected", [
    ("Refuse a missing artifact", True),
    ("Checksum the release artifact on the controller", True),
    ("Refuse an artifact whose checksum does not match", True),
    ("Check the deploy inputs", False),
    ("Stop, another run holds the lock", False),
])
def test_artifact_checks(task, expected):
    assert is_artifact_check({"task": task}) is expected


def test_a_step_of_another_stage_is_that_stage_except_in_a_rollback():
    from shipit.stages import step_stage

    assert step_stage("release", "migrate") == "migrate"
    assert step_stage("release", "stage") == "release"
    assert step_stage("rollback", "migrate") == "rollback"
