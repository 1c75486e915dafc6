"""The central's event log, on each engine: deduplicated by event id within a batch, across
batches and across processes writing at once; a device's odd characters cost themselves, never
the event."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from cloud_bridge.receiver.store import Database, EventStore

pytestmark = [pytest.mark.unit, pytest.mark.central]


def event(event_id: str, **data: object) -> dict[str, object]:
    return {"id": event_id, "kind": "alert", "type": "button.press", "priority": "critical",
            "device_id": "btn-0007", "data": data}


def test_an_id_is_stored_once_within_a_batch_and_across_batches(database: Database) -> None:
    store = EventStore(database)
    assert store.add("gw-1", [event("a"), event("b"), event("a")]) == (["a", "b"], ["a"])
    assert store.add("gw-1", [event("b"), event("c")]) == (["c"], ["b"])
    assert [e["id"] for e in store.list()] == ["a", "b", "c"]


def test_two_processes_given_one_batch_at_once_store_it_once(
    database: Database, opening: Callable[[], Database]
) -> None:
    stores = [EventStore(database), EventStore(opening())]
    for round_ in range(20):
        batch = [event(f"{round_}-{n}") for n in range(50)]
        start = threading.Barrier(2)
        answers: list[tuple[list[str], list[str]]] = []

        def add(store: EventStore, batch: list = batch, start: threading.Barrier = start,
                answers: list = answers) -> None:
            start.wait()
            answers.append(store.add("gw-1", batch))

        threads = [threading.Thread(target=add, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ids = sorted(e["id"] for e in batch)
        assert sorted(answers[0][0] + answers[1][0]) == ids  # accepted once, by one of them
        assert sorted(answers[0][1] + answers[1][1]) == ids  # the other's duplicates
    assert len(stores[0].list(limit=5000)) == 20 * 50


def test_nul_and_lone_surrogates_cost_their_characters_not_the_event(database: Database) -> None:
    store = EventStore(database)
    assert store.add("gw-1", [event("odd", name="王\x00秀", note="\udb52!")]) == (["odd"], [])
    [kept] = store.list()
    assert kept["data"] == {"name": "王\ufffd秀", "note": "?!"}
