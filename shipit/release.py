"""Release versions and notes from git history, for the deploy workflow's production tag.

The next version follows semantic versioning from the commits since the last tag vX.Y.Z, read as
Conventional Commits: a breaking change ("type!:" or a "BREAKING CHANGE:" footer) bumps the major version,
a "feat" the minor one, anything else the patch. The notes list those commits by kind.
"""

import re
import subprocess

TAG_PATTERN = "v[0-9]*.[0-9]*.[0-9]*"
SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
CONVENTIONAL = re.compile(r"^(?P<type>[a-zA-Z]+)(\((?P<scope>[^)]*)\))?(?P<bang>!)?:\s*(?P<subject>.+)$")
SECTIONS = (("breaking", "Breaking changes"), ("feat", "Features"), ("fix", "Fixes"), ("other", "Other changes"))


def _git(*args, cwd=None):
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def last_tag(cwd=None):
    """The newest vX.Y.Z tag reachable from HEAD, or None."""
    try:
        return _git("describe", "--tags", "--abbrev=0", "--match", TAG_PATTERN, "HEAD", cwd=cwd).strip() or None
    except RuntimeError:
        return None


def commits_since(tag, cwd=None):
    """[(sha, subject, body)] of the commits after tag (all commits without one), oldest first."""
    revs = f"{tag}..HEAD" if tag else "HEAD"
    out = _git("log", "--reverse", "--format=%H%x1f%s%x1f%b%x1e", revs, cwd=cwd)
    commits = []
    for record in out.split("\x1e"):
        record = record.strip("\n")
        if record:
            sha, subject, body = (record.split("\x1f") + ["", ""])[:3]
            commits.append((sha, subject.strip(), body.strip()))
    return commits


def kind_of(subject, body=""):
    match = CONVENTIONAL.match(subject)
    if (match and match["bang"]) or re.search(r"^BREAKING[ -]CHANGE:", body or "", re.MULTILINE):
        return "breaking"
    if match and match["type"].lower() in ("feat", "fix"):
        return match["type"].lower()
    return "other"


def next_version(tag, commits):
    """The version after tag for these commits (the tag's own version if there are none; 0.1.0 without a tag)."""
    if tag is None:
        return "0.1.0"
    match = SEMVER.match(tag)
    if not match:
        raise ValueError(f"not a semantic version tag: {tag!r}")
    major, minor, patch = (int(x) for x in match.groups())
    kinds = {kind_of(subject, body) for _, subject, body in commits}
    if not commits:
        return f"{major}.{minor}.{patch}"
    if "breaking" in kinds:
        return f"{major + 1}.0.0" if major > 0 else f"0.{minor + 1}.0"  # 0.x: breaking changes bump the minor
    if "feat" in kinds:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def release_notes(version, tag, commits):
    """Markdown notes of the release: the commits since tag, by kind."""
    lines = [f"## {version}", "", f"Changes since {tag}:" if tag else "First release.", ""]
    for kind, title in SECTIONS:
        entries = [(sha, subject) for sha, subject, body in commits if kind_of(subject, body) == kind]
        if entries:
            lines += [f"### {title}", ""] + [f"- {subject} ({sha[:7]})" for sha, subject in entries] + [""]
    return "\n".join(lines).rstrip() + "\n"
