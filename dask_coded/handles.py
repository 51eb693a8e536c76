"""What every resident handle is: coded data kept on the workers until it is released.

:class:`~dask_coded.CodedMatrix`, :class:`~dask_coded.EncodedOperand`,
:class:`~dask_coded.CodedPartitions`, :class:`~dask_coded.CodedParts` and
:class:`~dask_coded.CodedShuffle` are handles: ``handle.release()`` and
``dask_coded.release(handle)`` drop what they keep.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class Handle(ABC):
    """A handle on coded data resident on the workers (or in this process)."""

    @abstractmethod
    def release(self) -> None:
        """Drop the coded data this handle keeps; using it afterwards raises
        :class:`~dask_coded.CodedError`."""
