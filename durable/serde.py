"""User values to bytes and back, with msgspec (msgpack), a size limit and type hints.

A value returned live is passed through the same encode/decode a replay uses, so the
workflow sees the same thing on the first run and on every replay: a step annotated
``-> Order`` (a dataclass or msgspec Struct) gets an ``Order`` back both times, an
unannotated one gets plain dicts and lists both times.
"""

from __future__ import annotations

import contextlib
import typing
import weakref
from collections.abc import Callable
from types import FunctionType
from typing import Any

import msgspec

from durable.errors import PayloadTooLargeError, SerializationError

__all__ = ["DEFAULT_MAX_PAYLOAD", "Serde", "return_type", "input_type"]

DEFAULT_MAX_PAYLOAD = 256 * 1024

_RESULT_DECODERS_KEPT = 1024
"""How many functions :meth:`Serde.result_decoder` remembers (then it starts over)."""
"""Default limit on one encoded value, in bytes (as AWS durable functions)."""


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to untyped values
        return {}


def return_type(fn: Callable[..., Any]) -> Any:
    """The annotated return type of ``fn`` (``Any`` when missing or unusable)."""
    if not getattr(fn, "__annotations__", None):
        return Any
    hint = _hints(fn).get("return", Any)
    return Any if hint is type(None) else hint


def input_type(fn: Callable[..., Any], position: int) -> Any:
    """The annotated type of ``fn``'s parameter at ``position`` (``Any`` when missing)."""
    import inspect

    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return Any
    if position >= len(params):
        return Any
    return _hints(fn).get(params[position].name, Any)


class Serde:
    """Encodes and decodes user values for one engine.

    Args:
        max_payload: largest encoded value accepted, in bytes.
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._encoder = msgspec.msgpack.Encoder()
        self._decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {Any: msgspec.msgpack.Decoder()}
        self._return_types: weakref.WeakKeyDictionary[Callable[..., Any], Any] = (
            weakref.WeakKeyDictionary()
        )
        self._result_decoders: dict[Callable[..., Any], msgspec.msgpack.Decoder[Any]] = {}

    def result_decoder(self, fn: Callable[..., Any]) -> msgspec.msgpack.Decoder[Any]:
        """The decoder for ``fn``'s annotated return type, in one dict lookup for a plain
        function (replay calls it once per recorded step).

        The dict is plain (a weak one costs more than the decode) and bounded, so it keeps
        only what stays alive anyway: annotated functions that capture nothing, such as a
        module's own, and for a bound method its function (never the instance). A lambda, a
        closure or a partial could hold a workflow's context (and through it its whole
        invocation); those go through :meth:`return_type`'s weak cache instead.
        """
        cache = self._result_decoders
        try:
            return cache[fn]
        except (KeyError, TypeError):
            pass
        target = getattr(fn, "__func__", fn)  # a bound method returns what its function does
        if target is not fn:
            try:
                return cache[target]
            except (KeyError, TypeError):
                pass
        decoder = self.decoder(self.return_type(target))
        if type(target) is FunctionType and target.__closure__ is None and target.__annotations__:
            if len(cache) >= _RESULT_DECODERS_KEPT:
                cache.clear()
            cache[target] = decoder
        return decoder

    def return_type(self, fn: Callable[..., Any]) -> Any:
        """:func:`return_type`, cached per function (resolving hints costs microseconds)."""
        if not getattr(fn, "__annotations__", None):
            return Any
        try:
            return self._return_types[fn]
        except (KeyError, TypeError):
            pass
        hint = return_type(fn)
        with contextlib.suppress(TypeError):  # not weak-referenceable: just not cached
            self._return_types[fn] = hint
        return hint

    def encode(self, value: object, *, what: str) -> bytes:
        """Encode ``value``; ``what`` names it in errors (e.g. ``"result of step 'charge'"``).

        Raises:
            SerializationError: msgspec cannot encode the value.
            PayloadTooLargeError: the encoding is over ``max_payload``.
        """
        try:
            data = self._encoder.encode(value)
        except _ENCODE_ERRORS as exc:
            raise _unencodable(what, value, exc) from None
        if len(data) > self.max_payload:
            raise self._too_large(what, data)
        return data

    def _too_large(self, what: str, data: bytes) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"{what} is {len(data)} bytes encoded, over the {self.max_payload}-byte payload limit"
        )

    def decoder(self, type_: Any) -> msgspec.msgpack.Decoder[Any]:
        """A cached decoder for ``type_`` (an untyped one when msgspec cannot handle it)."""
        try:
            return self._decoders[type_]
        except (KeyError, TypeError):
            pass
        try:
            decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(type_)
        except TypeError:
            decoder = self._decoders[Any]
        with contextlib.suppress(TypeError):  # an unhashable hint is simply not cached
            self._decoders[type_] = decoder
        return decoder

    def decode(self, data: bytes, type_: Any = Any, *, what: str = "value") -> Any:
        """Decode ``data`` to ``type_``.

        Raises:
            SerializationError: the data does not fit ``type_``.
        """
        try:
            return self.decoder(type_).decode(data)
        except msgspec.ValidationError as exc:
            raise _mismatch(what, exc) from None

    def roundtrip(self, value: object, type_: Any, *, what: str) -> tuple[bytes, Any]:
        """Encode ``value`` and decode it back as replay would; returns both."""
        data = self.encode(value, what=what)
        return data, self.decode(data, type_, what=what)

    def roundtrip_result(
        self, value: object, fn: Callable[..., Any], describe: Callable[[], str]
    ) -> tuple[bytes, Any]:
        """:meth:`roundtrip` for what ``fn`` returned, with its cached result decoder.

        ``describe()`` names the value in errors and is only called for one: a step that
        checkpoints its result pays for no message.
        """
        try:
            data = self._encoder.encode(value)
        except _ENCODE_ERRORS as exc:
            raise _unencodable(describe(), value, exc) from None
        if len(data) > self.max_payload:
            raise self._too_large(describe(), data)
        try:
            return data, self.result_decoder(fn).decode(data)
        except msgspec.ValidationError as exc:
            raise _mismatch(describe(), exc) from None


_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)


def _unencodable(what: str, value: object, exc: Exception) -> SerializationError:
    return SerializationError(
        f"{what} cannot be serialized: {exc} (got {type(value).__name__}; use "
        "JSON-like values, dataclasses or msgspec Structs)"
    )


def _mismatch(what: str, exc: msgspec.ValidationError) -> SerializationError:
    return SerializationError(f"{what} does not match its annotation: {exc}")
