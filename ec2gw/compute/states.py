"""EC2's instance state machine: names, codes and which requests each state admits."""

from __future__ import annotations

CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}
NAMES = {v: k for k, v in CODES.items()}

#: instance types with more memory than this cannot hibernate: the saved memory is written to the
#: node's storage on every hibernating stop (DescribeInstanceTypes' HibernationSupported says so)
HIBERNATION_MAX_MEMORY_MIB = 8192
HIBERNATE_REASON = ("Client.UserInitiatedHibernate", "Client.UserInitiatedHibernate: User initiated hibernate")

#: state -> states from which the worker may still have work
TRANSITIONAL = ("pending", "stopping", "shutting-down")


def state_dict(name: str) -> dict[str, object]:
    return {"Code": CODES[name], "Name": name}


def can_stop(state: str) -> bool:
    return state in ("running", "stopping", "stopped")


def can_start(state: str) -> bool:
    return state in ("stopped", "pending", "running")


def can_reboot(state: str) -> bool:
    return state in ("running", "pending")


def can_hibernate(memory_mib: int) -> bool:
    """True for instance types small enough to hibernate (their memory is saved on the node)."""
    return memory_mib <= HIBERNATION_MAX_MEMORY_MIB


def can_modify_while_stopped(state: str) -> bool:
    return state == "stopped"
