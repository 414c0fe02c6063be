"""An ilastik-style pixel classifier: a random forest on multiscale filter features, per xy slice.

It is not a ``torch.nn.Module``; the trainer and the predictor give it the same train/predict surface as
the networks. Its trees are stored in ``checkpoint.pt`` as plain tensors (so the checkpoint loads with
``torch.load(weights_only=True)``, never through pickle) and rebuilt into scikit-learn trees for prediction.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from workbench.models.registry import ArchitectureSpec, ModelKind, register_architecture

_DEFAULTS = {
    "sigmas": [0.7, 1.0, 1.6, 3.5, 5.0],
    "n_estimators": 64,
    "max_depth": None,
    "max_samples_per_class": 50_000,
}
#: Gaussian kernels are cut at this many sigmas (scipy's default).
TRUNCATE = 4.0
FEATURES_PER_SIGMA = ("gaussian", "gradient magnitude", "laplacian of gaussian", "hessian eigenvalue 1",
                      "hessian eigenvalue 2", "structure tensor eigenvalue 1", "structure tensor eigenvalue 2")
#: sklearn's tree node fields stored in checkpoints
_NODE_FIELDS = ("left_child", "right_child", "feature", "threshold", "impurity", "n_node_samples",
                "weighted_n_node_samples", "missing_go_to_left")


def _radius(sigma: float) -> int:
    return int(TRUNCATE * float(sigma) + 0.5)


def _receptive_field(options: dict) -> tuple[int, int, int]:
    # structure tensor: gradient at sigma, then smoothing at 0.5 sigma (ilastik's outer scale)
    r = max(_radius(s) + _radius(0.5 * s) for s in options["sigmas"])
    return (1, 2 * r + 1, 2 * r + 1)


def _eig2(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (larger, smaller) of the symmetric 2x2 matrices [[a, b], [b, c]]."""
    mean = 0.5 * (a + c)
    root = np.sqrt(0.25 * (a - c) ** 2 + b * b)
    return mean + root, mean - root


def _sigma_features(img: np.ndarray, sigma: float) -> list[np.ndarray]:
    from scipy import ndimage as ndi

    g = ndi.gaussian_filter(img, sigma, truncate=TRUNCATE)
    gy = ndi.gaussian_filter(img, sigma, order=(1, 0), truncate=TRUNCATE)
    gx = ndi.gaussian_filter(img, sigma, order=(0, 1), truncate=TRUNCATE)
    hyy = ndi.gaussian_filter(img, sigma, order=(2, 0), truncate=TRUNCATE)
    hxx = ndi.gaussian_filter(img, sigma, order=(0, 2), truncate=TRUNCATE)
    hxy = ndi.gaussian_filter(img, sigma, order=(1, 1), truncate=TRUNCATE)
    h1, h2 = _eig2(hyy, hxy, hxx)
    outer = 0.5 * sigma
    syy = ndi.gaussian_filter(gy * gy, outer, truncate=TRUNCATE)
    sxx = ndi.gaussian_filter(gx * gx, outer, truncate=TRUNCATE)
    sxy = ndi.gaussian_filter(gx * gy, outer, truncate=TRUNCATE)
    s1, s2 = _eig2(syy, sxy, sxx)
    return [g, np.sqrt(gy * gy + gx * gx), hyy + hxx, h1, h2, s1, s2]


def slice_features(img: np.ndarray, sigmas) -> np.ndarray:
    """Multiscale features of one normalised 2D slice: float32 (n_features, y, x).

    Gaussian smoothing, gradient magnitude, Laplacian of Gaussian, Hessian and structure-tensor eigenvalues
    at each sigma (scipy releases the GIL, so the sigmas run in parallel threads).
    """
    img = np.ascontiguousarray(img, dtype=np.float32)
    with ThreadPoolExecutor(max_workers=min(len(sigmas), os.cpu_count() or 1)) as pool:
        per_sigma = list(pool.map(lambda s: _sigma_features(img, float(s)), sigmas))
    return np.stack([f.astype(np.float32, copy=False) for feats in per_sigma for f in feats])


class ForestModel:
    """Random forest pixel classifier on :func:`slice_features`.

    Args:
        in_channels: must be 1 (one grey-value channel).
        out_channels: number of classes.
        sigmas, n_estimators, max_depth, max_samples_per_class: see the registry defaults.
    """

    spatial_dims = 2

    def __init__(self, in_channels: int, out_channels: int, sigmas, n_estimators, max_depth, max_samples_per_class):
        from workbench.errors import WorkbenchError

        if in_channels != 1:
            raise WorkbenchError("the random forest works on single-channel (grey-value) images")
        self.out_channels = int(out_channels)
        self.sigmas = [float(s) for s in sigmas]
        self.n_estimators = int(n_estimators)
        self.max_depth = None if max_depth is None else int(max_depth)
        self.max_samples_per_class = int(max_samples_per_class)
        self.trees: list = []
        self.classes: list[int] = []

    @property
    def n_features(self) -> int:
        return len(self.sigmas) * len(FEATURES_PER_SIGMA)

    @property
    def is_trained(self) -> bool:
        return bool(self.trees)

    def features(self, img2d: np.ndarray) -> np.ndarray:
        return slice_features(img2d, self.sigmas)

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int = 0) -> ForestModel:
        """Fit on features ``x`` (n_samples, n_features) and class indices ``y`` (0..out_channels-1)."""
        from sklearn.ensemble import RandomForestClassifier

        rf = RandomForestClassifier(n_estimators=self.n_estimators, max_depth=self.max_depth, n_jobs=-1,
                                    random_state=seed)
        rf.fit(np.asarray(x, np.float32), np.asarray(y))
        self.trees = [est.tree_ for est in rf.estimators_]
        self.classes = [int(c) for c in rf.classes_]
        return self

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n_samples, out_channels) for features ``x``."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros((x.shape[0], self.out_channels), np.float64)

        def one(tree):
            v = tree.predict(x)
            v = v[:, 0, :] if v.ndim == 3 else v
            return v / np.maximum(v.sum(axis=1, keepdims=True), 1e-12)

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for v in pool.map(one, self.trees):
                out[:, self.classes] += v
        out /= max(len(self.trees), 1)
        return out.astype(np.float32)

    def predict_slice(self, img2d: np.ndarray) -> np.ndarray:
        """Probabilities (out_channels, y, x) of one normalised slice."""
        f = self.features(img2d)
        p = self.predict_features(f.reshape(f.shape[0], -1).T)
        return p.T.reshape(self.out_channels, *img2d.shape)

    # -- storage as plain tensors ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Trees as tensors (loadable with ``torch.load(weights_only=True)``)."""
        import torch

        state = {"classes": list(self.classes), "n_features": self.n_features, "trees": []}
        for tree in self.trees:
            s = tree.__getstate__()
            nodes = s["nodes"]
            entry = {"max_depth": int(s["max_depth"]), "values": torch.from_numpy(np.ascontiguousarray(s["values"]))}
            for name in nodes.dtype.names:
                entry[name] = torch.from_numpy(np.ascontiguousarray(nodes[name]))
            state["trees"].append(entry)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Rebuild the scikit-learn trees from :meth:`state_dict`."""
        from sklearn.tree._tree import NODE_DTYPE, Tree

        self.classes = [int(c) for c in state["classes"]]
        n_classes = np.array([len(self.classes)], dtype=np.intp)
        self.trees = []
        for entry in state["trees"]:
            values = entry["values"].numpy()
            nodes = np.zeros(values.shape[0], dtype=NODE_DTYPE)
            for name in NODE_DTYPE.names:
                if name in entry:
                    nodes[name] = entry[name].numpy()
            tree = Tree(int(state["n_features"]), n_classes, 1)
            tree.__setstate__({"max_depth": entry["max_depth"], "node_count": len(nodes), "nodes": nodes,
                               "values": np.ascontiguousarray(values, dtype=np.float64)})
            self.trees.append(tree)


@register_architecture(ArchitectureSpec(
    "forest",
    title="Random forest on filter features (ilastik-style)",
    paper="Sommer, Straehle, Köthe, Hamprecht. ilastik: Interactive learning and segmentation toolkit. ISBI 2011; "
    "Breiman. Random forests. Machine Learning 2001.",
    description="""Not a neural network: each pixel is described by smoothed intensities, edges, ridges and
    blob filters at several scales (sigma 0.7-5 pixels) and a random forest learns which combinations mean
    which class. It trains in seconds from a few scribbles and is a strong baseline for membranes and
    mitochondria in clean data; it cannot learn shapes larger than its largest filter. Works per xy slice
    (2D).""",
    dims=2,
    defaults=_DEFAULTS,
    receptive_field=_receptive_field,
    divisor=lambda o: (1, 1, 1),
    default_patch=(1, 256, 256),
    kind=ModelKind.FOREST,
))
def build_forest(in_channels: int, out_channels: int, **options) -> ForestModel:
    """An untrained :class:`ForestModel`."""
    return ForestModel(in_channels, out_channels, **options)
