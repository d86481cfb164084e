"""The seam between security-group membership and the nodes: "these instances' groups changed".

What: instance_groups_changed() is called in the very transaction that changed the groups of
instances (ModifyInstanceAttribute Groups, ModifyNetworkInterfaceAttribute SecurityGroupId.N), after
the new memberships are written. Whatever makes a membership reach the guests' nodes (their
network filters) hangs off this one function, so the API paths need not know how it is done.
Why: membership is per instance here (all its interfaces share its groups); the nodes enforce
rules per NIC, so a change must be carried to every NIC of those instances.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from ec2gw.db.models import Instance

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def instance_groups_changed(s: Session, instance_ids: list[str]) -> list[str]:
    """Announce that ``instance_ids`` have new groups (already written in ``s``); returns the ids of
    those that live on a node (not terminated), whose filters must follow. The compute worker's
    filter pass (compute/filter_sync.py) keeps every node's filters equal to the database, so it
    carries the change to the nodes on its next pass; nothing more is needed here today."""
    return list(s.scalars(select(Instance.id).where(Instance.id.in_(instance_ids), Instance.state != "terminated")))
