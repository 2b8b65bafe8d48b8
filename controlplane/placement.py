"""Placement: which online VM gets a workspace (pure logic).

A workspace goes to the online VM with the fewest workspaces; ties go to the
VM with the smaller id, so the choice is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def plan_placement(loads: Mapping[str, int], pending: Iterable[str]) -> list[tuple[str, str]]:
    """Pair each pending workspace (in order) with a VM; ``loads`` counts each online VM's.

    Returns ``(workspace_id, vm_id)`` pairs; empty when no VM is online.
    """
    current = dict(loads)
    plan: list[tuple[str, str]] = []
    if not current:
        return plan
    for workspace_id in pending:
        vm_id = min(current, key=lambda vm: (current[vm], vm))
        current[vm_id] += 1
        plan.append((workspace_id, vm_id))
    return plan
