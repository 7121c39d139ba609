"""The shipit lab: real Debian 12 target hosts (systemd as PID 1, sshd, their own Docker engine)
running as containers on this machine, reachable over SSH on 127.0.0.1.

Run it as ``python -m lab up|down|status|images|load``; see lab/README.md.
"""
