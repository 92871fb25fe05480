"""The failure-warning model: one calibrated scikit-learn Pipeline, a warning threshold, a saved artifact.

Owns: the column encoder (``encoder``), each family's Pipeline (``pipeline``), the threshold rules
(``threshold``), the estimator :class:`FailureWarningModel` and its reasons (``estimator``), and saved
models - the manifest (``manifest``), the models-directory layout, save and load (``artifacts``) and the
key that signs them (``signing``). A faster path for
scoring a few rows reads scikit-learn's private attributes; it lives alone in ``_sklearn_fast``, used
only on the scikit-learn releases it was tested on. May import: pandas, numpy, scikit-learn, scipy, joblib,
threadpoolctl, ``forewarn.learning.features`` and the shared modules.

Saved models are pickles, and a pickle names each class and function by the module that defines it:
:class:`FailureWarningModel`, :class:`FrameEncoder`, :class:`PrefitCalibratedClassifier`,
:class:`StackedClassifier` and the logreg pipeline's two column converters say they live in this package,
as they did before it was split, so that artifacts saved before and after load alike.

Example::

    >>> model = FailureWarningModel(family="hgb", threshold_rule="precision", target_precision=0.5)
    >>> model.get_params()["alert_budget"]
    0.05
"""

from forewarn.learning.model.artifacts import (
    LATEST_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    ModelManifest,
    library_versions,
    load_model,
    refuse_key_file_inside,
    save_model,
    schema_differences,
    spec_types,
)
from forewarn.learning.model.encoder import FrameEncoder

# Saved logreg pipelines name these functions by these paths (see above), so they must resolve here.
from forewarn.learning.model.encoder import categorical_block as _categorical_block  # noqa: F401
from forewarn.learning.model.encoder import clip_standardized as _clip_standardized  # noqa: F401
from forewarn.learning.model.encoder import numeric_block as _numeric_block  # noqa: F401
from forewarn.learning.model.estimator import FailureWarningModel, Reason
from forewarn.learning.model.pipeline import (
    DEFAULT_FAMILY,
    FAMILIES,
    PrefitCalibratedClassifier,
    StackedClassifier,
    make_pipeline,
)
from forewarn.learning.model.signing import ModelKey, model_key
from forewarn.learning.model.threshold import THRESHOLD_RULES, choose_threshold, choose_threshold_over_slices

__all__ = [
    "DEFAULT_FAMILY",
    "FAMILIES",
    "LATEST_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "SIGNATURE_FILE",
    "THRESHOLD_RULES",
    "FailureWarningModel",
    "FrameEncoder",
    "ModelKey",
    "ModelManifest",
    "PrefitCalibratedClassifier",
    "Reason",
    "StackedClassifier",
    "choose_threshold",
    "choose_threshold_over_slices",
    "library_versions",
    "load_model",
    "refuse_key_file_inside",
    "make_pipeline",
    "model_key",
    "save_model",
    "schema_differences",
    "spec_types",
]
