"""Routes to one client connection: what a VM sends for that connection alone.

A ``reply`` answers a ``request`` of one connection; a terminal's output
belongs to the connection that opened it. Both are booked here under a key
(the workspace and the request's or the terminal's id) with the client that
may receive them and the VM that may send them; nothing booked here is
ever part of a workspace's log (docs/protocol.md, "Requests and replies"
and "Terminals").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

import attrs

C = TypeVar("C")
V = TypeVar("V")
#: (workspaceId, requestId or terminalId).
Key = tuple[str, str]


@attrs.frozen
class Route(Generic[C, V]):
    """Frames under one key go from ``vm`` to ``client`` only."""

    client: C
    vm: V


class Routes(Generic[C, V]):
    """Booked routes by key, and the keys of each client (its limit and cleanup)."""

    def __init__(self) -> None:
        self._routes: dict[Key, Route[C, V]] = {}
        self._by_client: dict[C, set[Key]] = {}

    def __contains__(self, key: Key) -> bool:
        return key in self._routes

    def __len__(self) -> int:
        return len(self._routes)

    def count(self, client: C) -> int:
        """How many routes ``client`` has booked."""
        return len(self._by_client.get(client, ()))

    def book(self, key: Key, client: C, vm: V) -> None:
        """Frames under ``key`` from ``vm`` go to ``client`` from now on."""
        self._routes[key] = Route(client, vm)
        self._by_client.setdefault(client, set()).add(key)

    def get(self, key: Key) -> Route[C, V] | None:
        """The route booked under ``key``, if any."""
        return self._routes.get(key)

    def target(self, key: Key, vm: V) -> C | None:
        """The client ``vm`` may reach under ``key``; None when it may not."""
        route = self._routes.get(key)
        return route.client if route is not None and route.vm is vm else None

    def settle(self, key: Key, vm: V) -> C | None:
        """:meth:`target`, and the route is gone."""
        client = self.target(key, vm)
        if client is not None:
            self.drop(key)
        return client

    def drop(self, key: Key) -> Route[C, V] | None:
        """Forget one route (no matter who booked it)."""
        route = self._routes.pop(key, None)
        if route is not None:
            mine = self._by_client.get(route.client)
            if mine is not None:
                mine.discard(key)
                if not mine:
                    del self._by_client[route.client]
        return route

    def drop_client(self, client: C) -> list[tuple[Key, Route[C, V]]]:
        """Forget every route of a client (its connection closed)."""
        keys = self._by_client.pop(client, set())
        return [(key, self._routes.pop(key)) for key in keys if key in self._routes]

    def drop_vm(self, vm: V, workspace_id: str | None = None) -> list[tuple[Key, Route[C, V]]]:
        """Forget every route from ``vm`` (on ``workspace_id`` only, if given)."""
        gone = [
            key
            for key, route in self._routes.items()
            if route.vm is vm and (workspace_id is None or key[0] == workspace_id)
        ]
        return [(key, route) for key in gone if (route := self.drop(key)) is not None]

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._routes))
