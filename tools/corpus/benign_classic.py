"""Benign classic-ML generators: fitted scikit-learn estimators, pipelines
and xgboost models, saved with pickle (protocols 2, 4, 5) and joblib (plain
and zlib/gzip/bz2/xz/lzma compressed at several levels)."""

from __future__ import annotations

import pickle
import warnings
from typing import Any, Callable

import numpy as np

from benign_base import Ctx

# estimator name -> (data kind, object library).  The factories live in
# build_estimator so that importing this module stays cheap for plan().
ESTIMATORS: dict[str, tuple[str, str]] = {
    "logistic-regression": ("clf", "sklearn"),
    "linear-regression": ("reg", "sklearn"),
    "ridge": ("reg", "sklearn"),
    "lasso": ("reg", "sklearn"),
    "elastic-net": ("reg", "sklearn"),
    "sgd-classifier": ("clf", "sklearn"),
    "linear-svc": ("clf", "sklearn"),
    "svc": ("clf", "sklearn"),
    "svr": ("reg", "sklearn"),
    "decision-tree-classifier": ("clf", "sklearn"),
    "decision-tree-regressor": ("reg", "sklearn"),
    "random-forest-classifier": ("clf", "sklearn"),
    "random-forest-regressor": ("reg", "sklearn"),
    "extra-trees-classifier": ("clf", "sklearn"),
    "gradient-boosting-classifier": ("clf", "sklearn"),
    "hist-gradient-boosting-classifier": ("clf", "sklearn"),
    "adaboost-classifier": ("clf", "sklearn"),
    "kneighbors-classifier": ("clf", "sklearn"),
    "kneighbors-regressor": ("reg", "sklearn"),
    "gaussian-nb": ("clf", "sklearn"),
    "multinomial-nb": ("text", "sklearn"),
    "kmeans": ("unsup", "sklearn"),
    "minibatch-kmeans": ("unsup", "sklearn"),
    "pca": ("unsup", "sklearn"),
    "truncated-svd": ("unsup", "sklearn"),
    "standard-scaler": ("unsup", "sklearn"),
    "minmax-scaler": ("unsup", "sklearn"),
    "one-hot-encoder": ("cat", "sklearn"),
    "label-encoder": ("labels", "sklearn"),
    "tfidf-vectorizer": ("text", "sklearn"),
    "count-vectorizer": ("text", "sklearn"),
    "pipeline-scaler-logreg": ("clf", "sklearn"),
    "pipeline-tfidf-linearsvc": ("text", "sklearn"),
    "column-transformer-pipeline": ("mixed", "sklearn"),
    "grid-search-cv": ("clf", "sklearn"),
    "mlp-classifier": ("clf", "sklearn"),
    "isolation-forest": ("unsup", "sklearn"),
    "calibrated-classifier": ("clf", "sklearn"),
    "voting-classifier": ("clf", "sklearn"),
    "xgb-classifier": ("clf", "xgboost"),
    "xgb-regressor": ("reg", "xgboost"),
    "xgb-booster": ("clf", "xgboost"),
}

# (writer, option) serialisations; file suffixes follow common practice.  The
# first N_PLAIN_SERIALIZATIONS are uncompressed.
SERIALIZATIONS: list[dict] = (
    [{"via": "pickle", "protocol": p, "suffix": ".pkl"} for p in (2, 4, 5)]
    + [{"via": "joblib", "compress": None, "suffix": ".joblib"}]
    + [{"via": "joblib", "compress": [c, lvl], "suffix": sfx}
       for c, sfx in (("zlib", ".joblib.z"), ("gzip", ".joblib.gz"), ("bz2", ".joblib.bz2"),
                      ("xz", ".joblib.xz"), ("lzma", ".joblib.lzma"))
       for lvl in (1, 3, 9)]
)

N_PLAIN_SERIALIZATIONS = 4

_WORDS = ("model data train loss layer token graph learn vector matrix tensor "
          "feature label batch epoch sample weight bias gradient kernel tree forest "
          "node split class score metric value cluster").split()


def make_data(kind: str, n: int, f: int, rng: np.random.Generator) -> tuple[Any, Any]:
    if kind in ("clf", "labels"):
        X = rng.normal(size=(n, f))
        w = rng.normal(size=f)
        y = (X @ w + 0.3 * rng.normal(size=n) > 0).astype(int)
        if kind == "labels":
            return np.array(["cat", "dog", "bird", "fish"])[rng.integers(0, 4, n)], None
        return X, y
    if kind == "reg":
        X = rng.normal(size=(n, f))
        return X, X @ rng.normal(size=f) + 0.1 * rng.normal(size=n)
    if kind == "unsup":
        return rng.normal(size=(n, f)) * rng.uniform(0.5, 3, size=f), None
    if kind == "text":
        docs = [" ".join(rng.choice(_WORDS, size=rng.integers(4, 12))) for _ in range(n)]
        return docs, (rng.random(n) > 0.5).astype(int)
    if kind == "cat":
        return np.stack([np.array(["red", "green", "blue"])[rng.integers(0, 3, n)],
                         np.array(["s", "m", "l", "xl"])[rng.integers(0, 4, n)]], axis=1), None
    if kind == "mixed":
        import pandas as pd
        X = pd.DataFrame({"age": rng.integers(18, 80, n), "income": rng.normal(5e4, 1e4, n),
                          "city": np.array(["paris", "tokyo", "lima"])[rng.integers(0, 3, n)],
                          "plan": np.array(["free", "pro"])[rng.integers(0, 2, n)]})
        return X, (X["age"] > 40).astype(int).to_numpy()
    raise ValueError(kind)


def build_estimator(name: str, v: int, seed: int) -> Any:
    """Unfitted estimator ``name``; ``v`` picks a hyperparameter variant."""
    from sklearn import (calibration, cluster, compose, decomposition, ensemble,
                         feature_extraction, linear_model, model_selection,
                         naive_bayes, neighbors, neural_network, pipeline,
                         preprocessing, svm, tree)
    rs = seed % (2 ** 31)
    table: dict[str, Callable[[], Any]] = {
        "logistic-regression": lambda: linear_model.LogisticRegression(C=[0.1, 1.0, 10.0][v % 3]),
        "linear-regression": lambda: linear_model.LinearRegression(fit_intercept=v % 2 == 0),
        "ridge": lambda: linear_model.Ridge(alpha=[0.1, 1.0, 10.0][v % 3]),
        "lasso": lambda: linear_model.Lasso(alpha=[0.01, 0.1][v % 2]),
        "elastic-net": lambda: linear_model.ElasticNet(alpha=0.05, l1_ratio=[0.2, 0.5, 0.8][v % 3]),
        "sgd-classifier": lambda: linear_model.SGDClassifier(loss=["hinge", "log_loss"][v % 2],
                                                             random_state=rs, max_iter=50),
        "linear-svc": lambda: svm.LinearSVC(C=[0.5, 1.0][v % 2], random_state=rs, max_iter=2000),
        "svc": lambda: svm.SVC(kernel=["rbf", "poly", "linear"][v % 3], probability=v % 2 == 0,
                               random_state=rs),
        "svr": lambda: svm.SVR(kernel=["rbf", "linear"][v % 2], C=1.0),
        "decision-tree-classifier": lambda: tree.DecisionTreeClassifier(max_depth=3 + v % 5,
                                                                        random_state=rs),
        "decision-tree-regressor": lambda: tree.DecisionTreeRegressor(max_depth=3 + v % 5,
                                                                      random_state=rs),
        "random-forest-classifier": lambda: ensemble.RandomForestClassifier(
            n_estimators=5 + 5 * (v % 3), max_depth=4 + v % 3, random_state=rs, n_jobs=1),
        "random-forest-regressor": lambda: ensemble.RandomForestRegressor(
            n_estimators=5 + 5 * (v % 2), max_depth=5, random_state=rs, n_jobs=1),
        "extra-trees-classifier": lambda: ensemble.ExtraTreesClassifier(
            n_estimators=8, max_depth=4 + v % 3, random_state=rs, n_jobs=1),
        "gradient-boosting-classifier": lambda: ensemble.GradientBoostingClassifier(
            n_estimators=10 + 10 * (v % 2), max_depth=2 + v % 2, random_state=rs),
        "hist-gradient-boosting-classifier": lambda: ensemble.HistGradientBoostingClassifier(
            max_iter=10 + 5 * (v % 3), random_state=rs),
        "adaboost-classifier": lambda: ensemble.AdaBoostClassifier(n_estimators=10 + 5 * (v % 3),
                                                                   random_state=rs),
        "kneighbors-classifier": lambda: neighbors.KNeighborsClassifier(n_neighbors=3 + 2 * (v % 3)),
        "kneighbors-regressor": lambda: neighbors.KNeighborsRegressor(
            n_neighbors=5, weights=["uniform", "distance"][v % 2]),
        "gaussian-nb": lambda: naive_bayes.GaussianNB(var_smoothing=[1e-9, 1e-8][v % 2]),
        "multinomial-nb": lambda: pipeline.make_pipeline(feature_extraction.text.CountVectorizer(),
                                                         naive_bayes.MultinomialNB(alpha=0.5 + v)),
        "kmeans": lambda: cluster.KMeans(n_clusters=2 + v % 4, n_init=3, random_state=rs),
        "minibatch-kmeans": lambda: cluster.MiniBatchKMeans(n_clusters=3 + v % 3, n_init=3,
                                                            random_state=rs, batch_size=64),
        "pca": lambda: decomposition.PCA(n_components=2 + v % 3, whiten=v % 2 == 1,
                                         random_state=rs),
        "truncated-svd": lambda: decomposition.TruncatedSVD(n_components=2 + v % 3, random_state=rs),
        "standard-scaler": lambda: preprocessing.StandardScaler(with_mean=v % 2 == 0),
        "minmax-scaler": lambda: preprocessing.MinMaxScaler(feature_range=(0, 1 + v % 2)),
        "one-hot-encoder": lambda: preprocessing.OneHotEncoder(handle_unknown="ignore",
                                                               sparse_output=v % 2 == 0),
        "label-encoder": lambda: preprocessing.LabelEncoder(),
        "tfidf-vectorizer": lambda: feature_extraction.text.TfidfVectorizer(
            ngram_range=(1, 1 + v % 2), sublinear_tf=v % 2 == 1),
        "count-vectorizer": lambda: feature_extraction.text.CountVectorizer(
            binary=v % 2 == 1, ngram_range=(1, 1 + v % 2)),
        "pipeline-scaler-logreg": lambda: pipeline.Pipeline([
            ("scaler", preprocessing.StandardScaler()),
            ("clf", linear_model.LogisticRegression(C=[0.5, 2.0][v % 2]))]),
        "pipeline-tfidf-linearsvc": lambda: pipeline.Pipeline([
            ("tfidf", feature_extraction.text.TfidfVectorizer()),
            ("svc", svm.LinearSVC(random_state=rs))]),
        "column-transformer-pipeline": lambda: pipeline.Pipeline([
            ("pre", compose.ColumnTransformer([
                ("num", preprocessing.StandardScaler(), ["age", "income"]),
                ("cat", preprocessing.OneHotEncoder(handle_unknown="ignore"), ["city", "plan"])])),
            ("model", [linear_model.LogisticRegression(),
                       tree.DecisionTreeClassifier(max_depth=3, random_state=rs)][v % 2])]),
        "grid-search-cv": lambda: model_selection.GridSearchCV(
            [svm.SVC(random_state=rs), linear_model.LogisticRegression()][v % 2],
            {"C": [0.1, 1.0, 10.0]}, cv=3, n_jobs=1),
        "mlp-classifier": lambda: neural_network.MLPClassifier(
            hidden_layer_sizes=(8 + 8 * (v % 3),), max_iter=30, random_state=rs),
        "isolation-forest": lambda: ensemble.IsolationForest(n_estimators=10 + 10 * (v % 2),
                                                             random_state=rs),
        "calibrated-classifier": lambda: calibration.CalibratedClassifierCV(
            svm.LinearSVC(random_state=rs), cv=3),
        "voting-classifier": lambda: ensemble.VotingClassifier([
            ("lr", linear_model.LogisticRegression()),
            ("nb", naive_bayes.GaussianNB()),
            ("dt", tree.DecisionTreeClassifier(max_depth=3, random_state=rs))],
            voting=["hard", "soft"][v % 2]),
    }
    return table[name]()


def fit_model(name: str, v: int, n: int, f: int, seed: int) -> Any:
    kind, _ = ESTIMATORS[name]
    rng = np.random.default_rng(seed)
    X, y = make_data(kind, n, f, rng)
    if name.startswith("xgb-"):
        import xgboost as xgb
        params = dict(n_estimators=4 + 4 * (v % 3), max_depth=2 + v % 3, learning_rate=0.3,
                      n_jobs=1, random_state=seed % (2 ** 31), tree_method="hist")
        if name == "xgb-classifier":
            return xgb.XGBClassifier(**params).fit(X, y)
        if name == "xgb-regressor":
            return xgb.XGBRegressor(**params).fit(X, y)
        dtrain = xgb.DMatrix(X, label=y)
        return xgb.train({"objective": "binary:logistic", "max_depth": 2 + v % 3,
                          "nthread": 1, "seed": seed % (2 ** 31), "eta": 0.3},
                         dtrain, num_boost_round=4 + 4 * (v % 3))
    est = build_estimator(name, v, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if y is None:
            est.fit(X)
        else:
            est.fit(X, y)
    if hasattr(est, "cv_results_"):
        # Search CVs record wall-clock fit/score times; replace them with
        # seeded plausible values so the pickle is reproducible.
        for key in ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"):
            if key in est.cv_results_:
                n_c = len(est.cv_results_[key])
                est.cv_results_[key] = np.round(rng.uniform(1e-3, 2e-2, n_c), 6)
        if hasattr(est, "refit_time_"):
            est.refit_time_ = float(np.round(rng.uniform(1e-3, 1e-2), 6))
    return est


def gen_classic(ctx: Ctx) -> None:
    p = ctx.params
    model = fit_model(p["estimator"], p["variant"], p["n_samples"], p["n_features"], ctx.seed)
    obj_lib = ESTIMATORS[p["estimator"]][1]
    obj: Any = model
    if p.get("wrap"):  # what people often ship: the model plus metadata
        obj = {"model": model, "feature_names": [f"f{i}" for i in range(p["n_features"])],
               "version": "1.0", "metrics": {"accuracy": round(0.7 + 0.05 * p["variant"], 3)}}
    for ser in p["serializations"]:
        out = ctx.path(f"{p['name']}/model{ser['suffix']}")
        extra = {"serialization": ser, "object_library": obj_lib}
        if ser["via"] == "pickle":
            with open(out, "wb") as fh:
                pickle.dump(obj, fh, protocol=ser["protocol"])
            ctx.emit(out, obj_lib, extra, loader="pickle.load")
        else:
            import joblib
            comp = ser["compress"]
            joblib.dump(obj, out, compress=tuple(comp) if comp else 0)
            ctx.emit(out, "joblib", extra, loader="joblib.load")
