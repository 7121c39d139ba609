"""Which deploy stage a task belongs to, decided from the file the task comes from: the one table.

The collection keeps each stage in one place (docs/deploy.md, "The stages"), so the file of a task names its stage:

    playbooks/<playbook>.yml, play on localhost  -> plan (the controller's play: inputs, release id)
    playbooks/stages/<name>.yml                  -> <name> (preflight, lock, backup, record, rollback, ...),
                                                    except STAGE_FILES (ledger.yml, progress.yml: the host's stage;
                                                    lock_refused.yml: lock)
    roles/<role>/...  for a role in ROLE_STAGES  -> its stage (health -> verify, rollback -> rollback,
                                                    db_backup -> backup; ROLE_FILE_STAGES: its restore -> restore)
    roles/<kind>/tasks/<file>.yml (a kind role)  -> KIND_TASK_FILES[<file>] (release.yml -> release, ...)
    roles/<kind>/tasks/<other>.yml               -> the host's current stage (a helper file of that stage)
    playbooks/<playbook>.yml, other plays        -> the host's current stage, else PLAYBOOK_STAGES or the name

Once a host is rolling back, the kind role and the health role run again (activate, switch, health checks):
those tasks are part of the rollback, not a second release (STICKY; likewise a recovery's rollback).
"""

import re

# Stages in the order a deploy runs them (the report lists a host's stages in the order they ran).
STAGE_ORDER = ("plan", "preflight", "lock", "recover", "rollout", "backup", "release", "migrate", "switch",
               "verify", "record", "rollback", "fleet_rollback", "report", "notify", "unlock", "restore", "history")

# A failure in one of these stages is a refusal: nothing on the hosts was changed yet.
REFUSAL_STAGES = frozenset({"plan", "preflight", "lock"})

ROLLBACK_STAGE = "rollback"
# Stages that roll a host back: the rescue of a failed deploy, and the hosts rolled back with the fleet
# after another host failed (stages/fleet_rollback.yml).
ROLLBACK_STAGES = frozenset({"rollback", "fleet_rollback"})
INHERIT = None  # "the stage the host is in": files that serve several stages

# playbooks/stages/<file>.yml: the file's name is the stage, except for these.
STAGE_FILES = {
    "ledger": INHERIT,    # the decision from the ledger, after the lock (and its recovery)
    "progress": INHERIT,  # "in progress" record beside the lock, written at the start of each stage
    "lock_refused": "lock",  # the lock stage's refusal, included only when another run holds a lock
}
STAGE_FILE_DEFAULT = {"ledger": "lock", "progress": "lock"}

# Roles that are a stage of their own (any task file), and task files of such roles with another stage.
ROLE_STAGES = {
    "shipit": "preflight",  # no tasks: only its argument validation (the inputs), at the start of the first host play
    "health": "verify",
    "rollback": "rollback",
    "db_backup": "backup",
    "backup": "backup",
    "restore": "restore",
    "lock": "lock",
    "notify": "notify",
}
ROLE_FILE_STAGES = {
    ("db_backup", "restore"): "restore",
    ("db_backup", "restore_test"): "restore",
}

# Task files of a kind role (systemd_service, compose_stack, ...): the small interface every kind has.
# Other files of a kind role belong to the stage the host is in (a helper file of that stage).
KIND_TASK_FILES = {
    "main": "release",      # argument validation of the entry point "main"
    "layout": "release",    # user, directories, environment file
    "images": "release",    # images present and pinned (compose)
    "release": "release",   # unpack the release / render its Compose file
    "migrate": "migrate",
    "switch": "switch",
    "switch_service": "switch",
    "prune": "switch",      # old releases removed right after the switch
    "slots": "switch",      # traffic switching: the release started in the idle slot, checked, given the traffic
    "slot_start": "switch",  # traffic switching (compose): the release's copy started in a slot
    "retire": "record",     # traffic switching: the previous slot stopped after the bake, as the release is recorded
    "activate": "rollback",  # entry point "activate": only a rollback makes an older release live again
    "activate_slot": "rollback",
}
KIND_STAGES = frozenset({"release", "migrate", "switch"})

# Tasks written directly in a playbook, outside stage files and roles.
PLAYBOOK_STAGES = {
    "deploy": "release",
    "rollback": "rollback",
    "backup": "backup",
    "restore": "restore",
    "history": "history",
    "unlock": "unlock",
}

# While a host is in one of these stages, the files of the stages listed run as part of it: a rollback
# runs the kind role's activate/switch and the health checks again, a recovery runs a rollback, a backup
# may prove that it restores.
STICKY = {
    "rollback": frozenset({"release", "migrate", "switch", "verify", "record", "restore", "backup"}),
    "fleet_rollback": frozenset({"rollback", "release", "migrate", "switch", "verify", "record", "restore", "backup"}),
    "recover": frozenset({"rollback", "release", "migrate", "switch", "verify", "record", "restore"}),
    "backup": frozenset({"restore"}),
}

# Steps of the host agent that are a stage of their own when one call runs them after the steps of another
# stage (the release's call runs its migration too): the report splits such a call by step (step_stage).
STEP_STAGES = {
    "migrate": "migrate",
}

# Wrappers that only include other tasks: they take no time of their own and belong to no stage.
INCLUDE_ACTIONS = frozenset({
    "ansible.builtin.include_role", "ansible.builtin.include_tasks", "ansible.builtin.import_role",
    "ansible.builtin.import_tasks", "include_role", "include_tasks", "import_role", "import_tasks",
})

_ROLE_FILE = re.compile(r"/roles/(?P<role>[^/]+)/(?P<kind>tasks|handlers)/(?P<file>[^/:]+?)\.ya?ml(:\d+)?$")
_STAGE_FILE = re.compile(r"/playbooks/stages/(?P<stage>[^/:]+?)\.ya?ml(:\d+)?$")
_PLAYBOOK_FILE = re.compile(r"(^|/)(?P<playbook>[^/:]+?)\.ya?ml(:\d+)?$")
_CONTROLLER_PATTERNS = frozenset({"localhost", "127.0.0.1"})
# ansible-core names a role's argument validation "Validating arguments against arg spec '<entry point>' - ...".
_ENTRY_POINT = re.compile(r"arg spec '(?P<name>[^']+)'")


def _role_name(role):
    """'shipit.deploy.health' and 'health' are the same role."""
    return (role or "").rsplit(".", 1)[-1]


def _role_stage(role, task_file, current):
    if (role, task_file) in ROLE_FILE_STAGES:
        return ROLE_FILE_STAGES[(role, task_file)]
    if role in ROLE_STAGES:
        return ROLE_STAGES[role]
    if task_file in KIND_TASK_FILES:
        return KIND_TASK_FILES[task_file]
    return current if current in KIND_STAGES else "release"


def stage_of(event_data, current=None):
    """The stage of one task event (its event_data), or None for an include wrapper outside stage files.

    current: the stage the host is in (the stage of its previous task), for files that serve several
    stages and for the stages that run others' files (STICKY).
    """
    path = event_data.get("task_path") or ""
    role = _role_name(event_data.get("role"))
    action = event_data.get("resolved_action") or event_data.get("task_action") or ""

    role_file = _ROLE_FILE.search(path)
    stage_file = _STAGE_FILE.search(path)
    if role_file:
        stage = _role_stage(role_file["role"], role_file["file"], current)
    elif stage_file:
        name = stage_file["stage"]
        stage = STAGE_FILES.get(name, name)
        if stage is INHERIT:
            stage = current if current not in (None, "plan") else STAGE_FILE_DEFAULT.get(name, name)
    elif role:  # a role's argument validation carries the path of the task that includes the role
        entry = _ENTRY_POINT.search(event_data.get("task") or "")
        stage = _role_stage(role, entry["name"] if entry else "main", current)
    elif event_data.get("play_pattern") in _CONTROLLER_PATTERNS:
        stage = "plan"
    elif action in INCLUDE_ACTIONS:
        return None
    else:
        match = _PLAYBOOK_FILE.search(path)
        playbook = match["playbook"] if match else ""
        stage = current or PLAYBOOK_STAGES.get(playbook, playbook or "run")

    if stage in STICKY.get(current, ()):
        return current
    return stage


def step_stage(task_stage, step_name):
    """The stage of one step of an agent call whose task is in task_stage (a rollback keeps its steps)."""
    stage = STEP_STAGES.get(step_name, task_stage)
    return task_stage if stage in STICKY.get(task_stage, ()) else stage


def stage_sort_key(name):
    return STAGE_ORDER.index(name) if name in STAGE_ORDER else len(STAGE_ORDER)


# Refusals that are artifact or build problems (exit 2): a refusing task of the plan, preflight or lock
# stages named for the artifact (preflight's "Refuse a missing artifact", "Checksum the release artifact").
_ARTIFACT_TASK = re.compile(r"\b(artifacts?|images?|checksums?|build)\b", re.IGNORECASE)


def is_artifact_check(event_data):
    return bool(_ARTIFACT_TASK.search(event_data.get("task") or ""))
