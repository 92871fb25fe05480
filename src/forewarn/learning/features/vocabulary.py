"""Integer codes for text values that only grow: a value keeps its code as new values arrive.

A :class:`~forewarn.learning.features.RunIndex` holds flows, versions and parameter sets as these codes, so
extending it never re-codes the rows it holds; a target's value the history never had gets a code no row has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


class Vocabulary:
    """Integer codes for text values that only grows: a value keeps its code as new values arrive.

    Codes let a :class:`RunIndex` hold flows, versions and parameter sets as integers, so that extending it
    with new rows never re-codes the old ones.

    Example::

        >>> v = Vocabulary()
        >>> v.encode(np.array(["etl", "sync", "etl"], dtype=object)).tolist()
        [0, 1, 0]
        >>> v.encode(np.array(["report", "etl"], dtype=object)).tolist(), len(v)
        ([2, 0], 3)
    """

    __slots__ = ("_codes", "names")

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_names(cls, names: list[str]) -> Vocabulary:
        """A vocabulary in which ``names[i]`` has code ``i`` (one read back from a snapshot).

        Raises ``ValueError`` when a name repeats: codes would be ambiguous.

        Example::

            >>> Vocabulary.from_names(["etl", "sync"]).encode(np.array(["sync"], dtype=object)).tolist()
            [1]
        """
        vocab = cls()
        vocab._codes = dict(zip(names, range(len(names)), strict=True))
        if len(vocab._codes) != len(names):
            raise ValueError("a vocabulary's names must not repeat")
        vocab.names = list(names)
        return vocab

    def encode(self, values: np.ndarray) -> np.ndarray:
        """The codes of ``values`` (``str``, ``<none>`` for missing), adding the values not seen before."""
        if len(values) <= 8:  # the live case: a dict lookup per value beats hashing the array
            return np.asarray([self._code(v) for v in values.tolist()], dtype=np.int64)
        codes, uniques = pd.factorize(values)
        table = np.asarray([self._code(u) for u in uniques.tolist()], dtype=np.int64)
        return table[codes] if len(table) else np.zeros(len(values), dtype=np.int64)

    def _code(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self.names)
            self.names.append(name)
        return code

    def code_of(self, name: str, unseen: dict[str, int]) -> int:
        """The code of ``name``: its own, else its code in ``unseen`` (see :meth:`lookup`), else -1."""
        code = self._codes.get(name)
        return code if code is not None else unseen.get(name, -1)

    def lookup(self, values: np.ndarray, unseen: dict[str, int]) -> np.ndarray:
        """The codes of ``values`` without growing: a value not seen gets the next free code, kept in ``unseen``.

        ``unseen`` is shared across calls that must agree (the targets and the attempts of one build).
        """
        out = np.empty(len(values), dtype=np.int64)
        for i, name in enumerate(values.tolist()):
            code = self._codes.get(name)
            if code is None:
                code = unseen.setdefault(name, len(self.names) + len(unseen))
            out[i] = code
        return out


@dataclass(frozen=True, slots=True, eq=False)
class RunVocabulary:
    """The vocabularies a :class:`~forewarn.learning.features.RunIndex` codes flows, versions, parameter sets with."""

    flows: Vocabulary = field(default_factory=Vocabulary)
    versions: Vocabulary = field(default_factory=Vocabulary)
    params: Vocabulary = field(default_factory=Vocabulary)
    attributes: dict[str, Vocabulary] = field(default_factory=dict)
    """One vocabulary per text pre-run attribute (``feature_<name>`` -> ``name``), in the order first seen;
    column ``j`` of :attr:`RunIndex.attrs` holds codes of the ``j``-th."""

    def attribute(self, name: str) -> Vocabulary:
        """The vocabulary of attribute ``name``, added (after the others) if new."""
        return self.attributes.setdefault(name, Vocabulary())
