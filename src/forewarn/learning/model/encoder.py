"""The column encoder of the ``hgb`` pipeline: raw feature rows to the float matrix HistGradientBoosting reads.

Also the two column converters both families use (:func:`numeric_block`, :func:`categorical_block`) and the
encoder's limits: categories pooled as "infrequent" below :data:`MIN_CATEGORY_COUNT`, at most
:data:`MAX_HGB_CATEGORIES` codes per column, and :data:`SMALL_BATCH`, the size up to which
:class:`FrameEncoder` takes its path for live scoring.

Example::

    >>> import pandas as pd
    >>> numeric_block(pd.DataFrame({"x": [1, None]})).tolist()
    [[1.0], [nan]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from forewarn.errors import ConfigurationError
from forewarn.learning.features import NONE

MIN_CATEGORY_COUNT = 20
"""Categories seen fewer times than this in training are pooled as "infrequent"."""

MAX_HGB_CATEGORIES = 250
"""At most this many codes per categorical feature; the rarest categories beyond it are pooled."""

SMALL_BATCH = 128
"""Up to this many rows, :class:`FrameEncoder` takes its fast path for live scoring. ``explain`` scores one row
per feature plus the row itself (74 with 73 feature columns), so this must exceed the feature count: at 64,
every ``explain`` of a 73-column model took the plain Pipeline, 4.2 ms instead of 2.0 ms for hgb."""

MAX_BINS = 255
"""HistGradientBoosting's bins per feature (its ``max_bins``), which :class:`FrameEncoder` bins numbers into."""

MISSING_CATEGORY = NONE

PICKLED_MODULE = "forewarn.learning.model"
"""Where saved models find the classes and functions they pickle (see the package docstring)."""


def numeric_block(X: pd.DataFrame) -> np.ndarray:
    """Numeric feature columns as a float matrix; missing values (None, NA, NaN) become NaN."""
    return np.asarray(X.to_numpy(dtype=float, na_value=np.nan), dtype=float)


def categorical_block(X: pd.DataFrame) -> np.ndarray:
    """Categorical feature columns as strings; missing values become the category ``"<none>"``."""
    values = X.to_numpy(dtype=object)
    out = values.astype(str).astype(object)
    out[pd.isna(values)] = MISSING_CATEGORY
    return out


STANDARD_SCORE_BOUND = 5.0
"""How many standard deviations from the training mean a standardised logreg input may lie (see below)."""


def clip_standardized(X: np.ndarray) -> np.ndarray:
    """Standardised numeric columns clipped to ±:data:`STANDARD_SCORE_BOUND`: a linear model must not extrapolate.

    A column that was nearly constant in training (a flow that always ran hourly: "runs ended in the last
    hour" is 1 on every row but the first) has a tiny standard deviation, so a value training hardly saw
    lands dozens of deviations away and a logistic regression turns it into a near-certain risk. Clipped,
    it counts as an unusually large value, no more.

    Example::

        >>> import numpy as np
        >>> from forewarn.learning.model.encoder import clip_standardized
        >>> clip_standardized(np.array([[-31.0, 0.5, 9.0]])).tolist()
        [[-5.0, 0.5, 5.0]]
    """
    return np.clip(X, -STANDARD_SCORE_BOUND, STANDARD_SCORE_BOUND)


def column_positions(columns: pd.Index, names: Sequence[str]) -> np.ndarray:
    """``columns.get_indexer(names)`` (-1: absent) via a dict: a ~35-name lookup costs ~100 us in pandas."""
    if not columns.is_unique:  # get_indexer raises InvalidIndexError, as it always did here
        return np.asarray(columns.get_indexer(names))
    where = {name: i for i, name in enumerate(columns.tolist())}
    return np.fromiter((where.get(name, -1) for name in names), dtype=np.intp, count=len(names))


def bin_edges(column: np.ndarray, max_bins: int = MAX_BINS) -> np.ndarray | None:
    """The bin edges of one numeric column, as HistGradientBoosting finds them unweighted; ``None``: no need.

    ``None`` when the column's finite values take at most ``max_bins`` distinct values (HistGradientBoosting
    then splits between each pair of them, and a bin index would say the same). Otherwise its
    ``max_bins - 1`` percentiles (``averaged_inverted_cdf``, as scikit-learn's ``_find_binning_thresholds``
    takes them), ties merged; value ``x`` falls in bin ``i`` when ``edges[i-1] < x <= edges[i]``.

    Example::

        >>> import numpy as np
        >>> bin_edges(np.array([1.0, 2.0, np.nan])) is None, bin_edges(np.arange(8.0), max_bins=4).tolist()
        (True, [1.5, 3.5, 5.5])
    """
    finite = np.sort(column[np.isfinite(column)])
    if len(finite) < 2 or np.count_nonzero(finite[1:] != finite[:-1]) + 1 <= max_bins:
        return None
    percentiles = np.linspace(0, 100, num=max_bins + 1)[1:-1]
    return np.unique(np.percentile(finite, percentiles, method="averaged_inverted_cdf"))


def object_rows(X: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """The rows' values of columns ``names`` (found by name, in that order) as one object matrix.

    Raises ``KeyError`` naming the columns ``X`` lacks.
    """
    positions = column_positions(X.columns, names)
    if (positions < 0).any():
        raise KeyError([n for n, i in zip(names, positions, strict=True) if i < 0])
    return X.to_numpy(dtype=object)[:, positions]


def object_columns(columns: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """What :func:`object_rows` makes of ``pd.DataFrame(columns)``, without building the frame."""
    values = np.empty((len(columns[names[0]]) if names else 0, len(names)), dtype=object)
    for j, name in enumerate(names):
        values[:, j] = columns[name]
    return values


def category_key(value: Any) -> str:
    """The category one value counts as, as :func:`categorical_block` spells it: missing is ``"<none>"``.

    Raises ``TypeError`` for a value whose truth is ambiguous (``pd.NA``): the caller takes the frame path.
    """
    return MISSING_CATEGORY if value is None or value != value else str(value)


class FrameEncoder(TransformerMixin, BaseEstimator):
    """Raw feature rows to the float matrix HistGradientBoosting reads: numbers, then category codes.

    Numeric columns become float64 (None/NA -> NaN, which HistGradientBoosting routes as "missing").
    A numeric column with more than ``max_bins`` distinct values in training becomes its bin index under
    :func:`bin_edges` (NaN kept): the bins HistGradientBoosting would find itself without sample weights.
    Given weights, scikit-learn 1.7+ finds them by weighted percentiles in Python, one call per edge -
    10.6 s of a 17 s fit on 100,000 weighted rows x 73 columns, single-threaded (see
    ``FailureWarningModel.max_fit_rows`` for the weights); on binned columns it has nothing left to find.
    ``max_bins=None`` passes numbers through as they are (models saved before binning existed).
    Each categorical column's values seen at least ``min_frequency`` times in training (at most
    ``max_categories - 1`` of them, most frequent first) get codes ``0..k-1``; rarer training values
    share code ``k`` ("infrequent"); values never seen in training become NaN ("missing"). Missing input
    is the category ``"<none>"``, as :func:`forewarn.learning.features.build_features` writes it.

    This is :class:`~sklearn.compose.ColumnTransformer` plus
    :class:`~sklearn.preprocessing.OrdinalEncoder` specialised to one job, because scoring one row
    through those costs about 1.3 ms, more than the live scoring budget (see ``docs/model.md``).

    Example::

        >>> import pandas as pd
        >>> frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "flow": ["a", "b", "b"]})
        >>> enc = FrameEncoder(["x"], ["flow"], min_frequency=1).fit(frame)
        >>> enc.transform(pd.DataFrame({"x": [None], "flow": ["a"]})).tolist()
        [[nan, 1.0]]
    """

    def __init__(
        self,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        min_frequency: int = MIN_CATEGORY_COUNT,
        max_categories: int = MAX_HGB_CATEGORIES,
        max_bins: int | None = MAX_BINS,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.min_frequency = min_frequency
        self.max_categories = max_categories
        self.max_bins = max_bins

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle; an encoder saved before binning existed passes numbers through, as it was fitted to."""
        state.setdefault("max_bins", None)
        super().__setstate__(state)

    def fit(self, X: pd.DataFrame, y: Any = None) -> FrameEncoder:
        """Learn each categorical column's codes, and each many-valued numeric column's bins, from ``X``."""
        self.codes_: dict[str, dict[str, int]] = {}
        for name in self.categorical:
            counts = pd.Series(categorical_block(X[[name]])[:, 0]).value_counts(sort=True)
            frequent = counts.index[counts.to_numpy() >= self.min_frequency][: self.max_categories - 1]
            codes = dict.fromkeys(counts.index, len(frequent))  # every training value: "infrequent"...
            codes.update({value: i for i, value in enumerate(frequent)})  # ...unless frequent
            self.codes_[name] = codes
        # A numeric column with no value in training (a feature_* column only recent runs carry) carries no
        # information, and HistGradientBoosting cannot bin an all-missing column: it becomes constant 0.
        numeric = numeric_block(X[list(self.numeric)]) if self.numeric else np.empty((len(X), 0))
        self.empty_numeric_ = np.flatnonzero(np.isnan(numeric).all(axis=0)) if len(X) else np.arange(0)
        self._fit_bins(numeric)
        self.feature_names_in_ = np.asarray([*self.numeric, *self.categorical], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The float matrix: numeric columns first, then one code column per categorical feature."""
        check_is_fitted(self, "codes_")
        if len(X) <= SMALL_BATCH:
            try:
                return self._finish(self._transform_small(X))
            except (TypeError, ValueError):  # e.g. pd.NA in an object column: take the general path
                pass
        k = len(self.numeric)
        out = np.empty((len(X), k + len(self.categorical)), dtype=float)
        if k:
            out[:, :k] = numeric_block(X[list(self.numeric)])
        for j, name in enumerate(self.categorical, start=k):
            values = categorical_block(X[[name]])[:, 0]
            out[:, j] = pd.Series(values, dtype=object).map(self.codes_[name]).to_numpy(dtype=float)
        return self._finish(out)

    def _fit_bins(self, numeric: np.ndarray) -> None:
        """``binned_``: the numeric columns binned; ``edges_``: their edges, a row each, padded with +inf."""
        bins = self.max_bins
        if bins is not None and (not isinstance(bins, int) or isinstance(bins, bool) or not 2 <= bins <= MAX_BINS):
            raise ConfigurationError("max_bins", bins, f"a whole number from 2 to {MAX_BINS}, or None")
        found = {} if bins is None else {j: bin_edges(numeric[:, j], bins) for j in range(numeric.shape[1])}
        kept = {j: e for j, e in found.items() if e is not None}
        self.binned_ = np.fromiter(kept, dtype=np.intp, count=len(kept))
        self.edges_ = np.full((len(kept), max((len(e) for e in kept.values()), default=0)), np.inf)
        for row, e in enumerate(kept.values()):
            self.edges_[row, : len(e)] = e  # +inf beyond: no finite value passes it, so the index is unchanged

    def _finish(self, out: np.ndarray) -> np.ndarray:
        """All-missing training columns to 0 and many-valued ones to their bin index (both fitted in ``fit``)."""
        empty = getattr(self, "empty_numeric_", None)  # absent in models saved before it existed
        if empty is not None and len(empty):
            out[:, empty] = 0.0
        binned = getattr(self, "binned_", None)  # absent in models saved before binning existed
        if binned is None or not len(binned):
            return out
        block = out[:, binned]
        if len(out) == 1:  # live scoring: one comparison of the row with every edge, ~10x one searchsorted each
            index = (self.edges_ < block.T).sum(axis=1, dtype=float)[None, :]
        else:
            index = np.column_stack([np.searchsorted(e, block[:, i]) for i, e in enumerate(self.edges_)]).astype(float)
        out[:, binned] = np.where(np.isnan(block), np.nan, index)
        return out

    def _transform_small(self, X: pd.DataFrame) -> np.ndarray:
        """The same for a few rows (live scoring) without per-column pandas selections: ~10x faster."""
        return self._encode_objects(object_rows(X, [*self.numeric, *self.categorical]))

    def _encode_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """What :meth:`transform` makes of ``pd.DataFrame(columns)`` (at most ``SMALL_BATCH`` rows), sans frame.

        :meth:`FailureWarningModel.explain` builds its batch as columns; building a DataFrame from them
        and taking it apart again cost more than scoring the batch. Raises ``TypeError``/``ValueError``
        where the small path does (the caller then takes the frame path).
        """
        return self.encode_objects(object_columns(columns, [*self.numeric, *self.categorical]))

    def encode_objects(self, values: np.ndarray) -> np.ndarray:
        """What :meth:`transform` makes of rows given as an object matrix ``[*numeric, *categorical]``
        (:func:`object_rows`): the stack's fast path encodes the matrix its logistic regression reads too."""
        return self._finish(self._encode_objects(values))

    def _encode_objects(self, values: np.ndarray) -> np.ndarray:
        """Encode an object matrix whose columns are ``[*numeric, *categorical]``, row by row."""
        k = len(self.numeric)
        out = np.empty(values.shape, dtype=float)
        out[:, :k] = values[:, :k].astype(float)
        for j, name in enumerate(self.categorical, start=k):
            codes = self.codes_[name]
            out[:, j] = [codes.get(category_key(v), np.nan) for v in values[:, j]]
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output column names: the numeric features, then the categorical ones."""
        return np.asarray([*self.numeric, *self.categorical], dtype=object)


# A logreg pipeline pickles these functions by name, and models saved before `model` became a package name
# them `forewarn.learning.model._numeric_block` and `..._categorical_block`: new ones name the same paths, which
# the package provides, so artifacts stay loadable whatever the module layout (the same for FrameEncoder).
numeric_block.__module__ = categorical_block.__module__ = FrameEncoder.__module__ = PICKLED_MODULE
clip_standardized.__module__ = PICKLED_MODULE
numeric_block.__qualname__ = "_numeric_block"
categorical_block.__qualname__ = "_categorical_block"
clip_standardized.__qualname__ = "_clip_standardized"

__all__ = [
    "MAX_BINS",
    "MAX_HGB_CATEGORIES",
    "MIN_CATEGORY_COUNT",
    "MISSING_CATEGORY",
    "SMALL_BATCH",
    "STANDARD_SCORE_BOUND",
    "FrameEncoder",
    "bin_edges",
    "categorical_block",
    "category_key",
    "clip_standardized",
    "column_positions",
    "numeric_block",
    "object_columns",
    "object_rows",
]
