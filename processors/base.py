"""The one small protocol every stateful processor speaks.

Like river's ``learn_one``/``predict_one``, a shared protocol lets one generic
test suite (``tests/processors/test_protocol.py``) check every processor for
the properties the stream needs:

* ``process(batch)`` consumes a batch of input and returns the outputs it
  caused (closed windows, alerts, segment changes ...). Batches, not single
  events, because per-event Python overhead is what limits a Faust agent.
* ``snapshot()`` returns JSON-serialisable state and ``restore(state)``
  rebuilds an equal processor, so a worker restart loses nothing: processing
  ``a`` then ``b`` gives the same outputs as processing ``a``, snapshotting,
  restoring and processing ``b``.

Processors import neither Kafka nor Faust: the same code serves the live
stream and batch backfills.

Examples:
    >>> class Counter:
    ...     def __init__(self) -> None:
    ...         self.n = 0
    ...     def process(self, batch: list[int]) -> list[int]:
    ...         self.n += len(batch)
    ...         return [self.n]
    ...     def snapshot(self) -> dict[str, int]:
    ...         return {"n": self.n}
    ...     @classmethod
    ...     def restore(cls, state: dict[str, int]) -> "Counter":
    ...         c = cls()
    ...         c.n = state["n"]
    ...         return c
    >>> isinstance(Counter(), StatefulProcessor)
    True
"""

from __future__ import annotations

from typing import Any, Protocol, Self, TypeVar, runtime_checkable

InT = TypeVar("InT", contravariant=True)
OutT = TypeVar("OutT", covariant=True)


@runtime_checkable
class StatefulProcessor(Protocol[InT, OutT]):
    """A batch-in, outputs-out processor whose state can be snapshotted and restored."""

    def process(self, batch: InT) -> OutT:
        """Consume one batch and return the outputs it caused."""
        ...

    def snapshot(self) -> Any:
        """JSON-serialisable state, enough for :meth:`restore` to rebuild an equal processor."""
        ...

    @classmethod
    def restore(cls, state: Any) -> Self:
        """Rebuild a processor from :meth:`snapshot` output."""
        ...
