"""shipit: the CI entry point of the shipit.deploy collection.

`shipit deploy|rollback|backup|restore|history --env ENV ...` runs the collection's playbook through
ansible-runner, streams one line per stage and host, writes report.json and report.md next to the runner's
artifacts and exits with a documented code (shipit.exitcodes).
"""

__version__ = "0.1.0"
