"""A scikit-learn face for jaxtune: estimators, and a search that trains every fit at once.

* :class:`JaxtuneClassifier`, :class:`JaxtuneRegressor`: jaxtune's ready-made tasks as
  scikit-learn estimators (``fit``/``predict``/``predict_proba``/``score``; they work in a
  ``Pipeline``, in ``GridSearchCV``, with ``clone``, and pass ``check_estimator``). Each ``fit``
  trains one member with :func:`jaxtune.train`.
* :class:`JaxtuneSearchCV`: a drop-in for ``GridSearchCV``/``RandomizedSearchCV`` over them
  that trains every ``candidate x fold`` as ONE jaxtune population and fills ``cv_results_``
  in scikit-learn's format.

Requires scikit-learn >= 1.6 (``pip install "jaxtune[sklearn]"``). See ``docs/sklearn.md``.

Example::

    from sklearn.datasets import load_breast_cancer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from jaxtune.sklearn import JaxtuneClassifier, JaxtuneSearchCV

    x, y = load_breast_cancer(return_X_y=True)
    search = JaxtuneSearchCV(JaxtuneClassifier(num_steps=100),
                             {"learning_rate": [0.01, 0.1], "l2": [0.0, 1e-3]}, cv=5)
    model = make_pipeline(StandardScaler(), search).fit(x, y)
"""

from jaxtune.sklearn_estimators import (
    MODELS,
    JaxtuneClassifier,
    JaxtuneEstimator,
    JaxtuneRegressor,
    member_config,
)
from jaxtune.sklearn_search import JaxtuneSearchCV

__all__ = [
    "MODELS",
    "JaxtuneClassifier",
    "JaxtuneEstimator",
    "JaxtuneRegressor",
    "JaxtuneSearchCV",
    "member_config",
]
