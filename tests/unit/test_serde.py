"""Encoding user values."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from durable.errors import PayloadTooLargeError, SerializationError
from durable.serde import Serde, input_type, return_type


@dataclasses.dataclass
class Order:
    id: str
    amount: int


def test_roundtrip_gives_the_annotated_type() -> None:
    serde = Serde()
    data, value = serde.roundtrip(Order("o-1", 5), Order, what="result")
    assert value == Order("o-1", 5)
    assert serde.decode(data) == {"id": "o-1", "amount": 5}


def test_unencodable_values_name_the_operation() -> None:
    with pytest.raises(SerializationError, match="result of step 'charge' cannot be serialized"):
        Serde().encode(object(), what="result of step 'charge'")


def test_payload_limit_is_checked_before_writing() -> None:
    serde = Serde(max_payload=100)
    serde.encode("x" * 90, what="input")
    with pytest.raises(PayloadTooLargeError, match="over the 100-byte payload limit"):
        serde.encode("x" * 200, what="input")


def test_mismatched_annotation_is_a_serialization_error() -> None:
    serde = Serde()
    data = serde.encode({"id": 1}, what="x")
    with pytest.raises(SerializationError, match="does not match"):
        serde.decode(data, Order, what="result of step 'load'")


def test_type_hints_are_read_from_functions() -> None:
    async def wf(ctx: Any, order: Order) -> Order:
        return order

    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    assert return_type(wf) is Order
    assert input_type(wf, 1) is Order
    assert return_type(untyped) is Any
    assert return_type(lambda: 1) is Any


def test_result_decoders_follow_the_return_annotation_and_stay_bounded() -> None:
    serde = Serde()

    def make_order() -> Order:
        return Order("o-1", 5)

    data = serde.encode(make_order(), what="result")
    assert serde.result_decoder(make_order).decode(data) == Order("o-1", 5)
    assert serde.result_decoder(lambda: None).decode(data) == {"id": "o-1", "amount": 5}
    makers = []
    for n in range(3000):  # closures made per call: remembered, but never without bound

        def maker(n: int = n) -> int:
            return n

        makers.append(maker)
        assert serde.result_decoder(maker).decode(serde.encode(n, what="n")) == n
    assert len(serde._result_decoders) <= 1024


class Client:
    def fetch(self) -> Order:
        return Order("o-1", 5)


def test_a_result_decoder_is_kept_for_a_method_but_not_its_instance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc
    import weakref

    import durable.serde

    serde = Serde()
    client = Client()
    alive = weakref.ref(client)
    gc.disable()  # only reference counting may free the instance
    try:
        decoder = serde.result_decoder(client.fetch)
        resolved: list[object] = []  # the type hints are not read again, for any instance
        monkeypatch.setattr(durable.serde, "return_type", lambda fn: resolved.append(fn))
        assert serde.result_decoder(Client().fetch) is decoder
        assert resolved == []
        assert decoder.decode(serde.encode(Order("o-2", 7), what="x")) == Order("o-2", 7)
        del client
        assert alive() is None
    finally:
        gc.enable()


def test_a_closure_result_decoder_is_not_kept() -> None:
    import gc
    import weakref

    serde = Serde()

    class Captured:
        pass

    captured = Captured()
    alive = weakref.ref(captured)

    def make(held: Captured) -> Any:
        def fetch() -> Order:
            return Order("o-1", 5) if held else Order("o-0", 0)

        return fetch

    gc.disable()
    try:
        fetch = make(captured)
        decoder = serde.result_decoder(fetch)
        assert decoder.decode(serde.encode(Order("o-3", 1), what="x")) == Order("o-3", 1)
        del fetch, captured
        assert alive() is None
    finally:
        gc.enable()
