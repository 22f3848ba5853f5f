"""Optional learned metrics over a VGG16 backbone: LPIPS, DISTS, and FID / KID on VGG16 features.

These metrics need ImageNet-trained weights, which cannot be downloaded here. The user gives them as
one safetensors file (or a folder of them) through ``--perceptual-weights PATH`` or the environment
variable :data:`ENV_VAR`; without it the columns are skipped and the report carries
:data:`SKIP_NOTE`. We build the networks ourselves (no torchvision or timm model constructors, which
may try to download) and load strictly, so a file with the wrong keys or shapes is refused.

Keys of the weights file (torchvision's layouts, so existing checkpoints convert by renaming)::

    vgg16.features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.{weight,bias}   required (torchvision vgg16;
                                                                          the "vgg16." prefix is
                                                                          optional, classifier.* is ignored)
    lpips.lin{0..4}.weight            (1, C_k, 1, 1)  optional: LPIPS-VGG v0.1 heads (the original
                                                      file's "lin{k}.model.1.weight" also works)
    dists.alpha, dists.beta           (1, 1475, 1, 1) optional: DISTS weights

Networks (all on one VGG16 ``features`` stack; inputs are normalised with the ImageNet mean and std,
which is exactly LPIPS's ScalingLayer applied to [-1, 1] inputs):

- **LPIPS** (Zhang et al. 2018): relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, each unit-normalised
  over channels; squared difference, weighted by the 1x1 heads, spatially averaged, summed.
- **DISTS** (Ding et al. 2020): the same stack with max pooling replaced by L2 pooling (Hann window
  3x3, stride 2); the image plus the five stages; texture (mean) and structure (covariance) terms
  weighted by alpha and beta. ``1 − Σ`` of the weighted similarities.
- **FID / KID on VGG16** (columns ``fid_vgg``, ``kid_vgg``): we chose VGG16 relu5_3 rather than an
  Inception network so that a single backbone file serves every metric. One clip has few frames, so
  the samples are the spatial feature vectors of relu5_3 (one 512-d vector per 16x16 patch, up to
  :data:`MAX_FEATURE_VECTORS` of them), in the spirit of the patch FID of learned image compression.
  These numbers are *not* comparable with Inception-FID from papers; compare codecs with each other.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.errors import WeightsError

ENV_VAR = "PROGVC_PERCEPTUAL_WEIGHTS"
VGG16_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                       512, 512, 512, "M", 512, 512, 512, "M")
TAPS = (3, 8, 15, 22, 29)  # indexes of relu1_2 .. relu5_3 in vgg16.features
CHANNELS = (64, 128, 256, 512, 512)
DISTS_CHANNELS = (3, *CHANNELS)  # DISTS also compares the input image itself: 1475 in all
MAX_FEATURE_VECTORS = 8192
SKIP_NOTE = (
    "lpips, dists, fid_vgg, kid_vgg: skipped, no backbone weights "
    f"(give --perceptual-weights PATH or set {ENV_VAR}; see progvc.bench.perceptual)"
)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def build_networks(lpips: bool = True, dists: bool = True) -> Any:
    """Randomly initialised ``torch.nn.ModuleDict`` with keys ``vgg16`` [, ``lpips``, ``dists``].

    Its ``state_dict()`` keys are exactly the weights-file keys documented above.
    """
    import torch
    from torch import nn

    layers: list[nn.Module] = []
    c_in = 3
    for v in VGG16_LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            c_in = int(v)
    nets = nn.ModuleDict({"vgg16": nn.ModuleDict({"features": nn.Sequential(*layers)})})
    if lpips:
        nets["lpips"] = nn.ModuleDict({f"lin{k}": nn.Conv2d(c, 1, 1, bias=False) for k, c in enumerate(CHANNELS)})
    if dists:
        shape = (1, sum(DISTS_CHANNELS), 1, 1)
        nets["dists"] = nn.ParameterDict({"alpha": nn.Parameter(torch.rand(shape)),
                                          "beta": nn.Parameter(torch.rand(shape))})
    return nets.eval().requires_grad_(False)


def save_random_weights(path: str | Path, *, lpips: bool = True, dists: bool = True, seed: int = 0) -> Path:
    """Write randomly initialised networks to a safetensors file (tests and format examples)."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    nets = build_networks(lpips, dists)
    if lpips:  # LPIPS heads are non-negative by construction (clamped during training)
        for conv in nets["lpips"].values():
            conv.weight.data.abs_()
    save_file({k: v.contiguous() for k, v in nets.state_dict().items()}, str(path))
    return Path(path)


def resolve_weights_path(path: str | Path | None) -> Path | None:
    """The weights path from the argument or else :data:`ENV_VAR`; None when neither is set."""
    given = path if path not in (None, "") else os.environ.get(ENV_VAR) or None
    if given is None:
        return None
    p = Path(given).expanduser()
    if not p.exists():
        raise WeightsError(f"perceptual weights {p} do not exist; give a safetensors file or unset {ENV_VAR}")
    return p


def _read_tensors(path: Path) -> dict[str, Any]:
    """Every tensor of a safetensors file, or of all ``*.safetensors`` files in a folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files:
        raise WeightsError(f"no *.safetensors file in {path}; convert the backbone weights first")
    tensors: dict[str, Any] = {}
    for f in files:
        try:
            tensors.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{f} is not a readable safetensors file ({exc}); re-export it") from exc
    return tensors


def _canonical(key: str) -> str | None:
    """Map accepted key spellings onto the documented ones; None for keys that are ignored."""
    if key.startswith("classifier.") or key.startswith("vgg16.classifier."):
        return None
    if key.startswith("features."):
        return "vgg16." + key
    if key.startswith("lpips.") and ".model.1." in key:
        return key.replace(".model.1.", ".")
    return key


def load_perceptual(path: str | Path | None, device: str = "cpu") -> PerceptualModels | None:
    """Load the networks from ``path`` (or :data:`ENV_VAR`); None when no weights are given.

    Raises :class:`progvc.WeightsError` when the file is unreadable, lacks the VGG16 backbone, or
    has unexpected keys or shapes.
    """
    p = resolve_weights_path(path)
    if p is None:
        return None
    raw = _read_tensors(p)
    state = {c: v for k, v in raw.items() if (c := _canonical(k)) is not None}
    has_lpips = any(k.startswith("lpips.") for k in state)
    has_dists = any(k.startswith("dists.") for k in state)
    nets = build_networks(has_lpips, has_dists)
    try:
        nets.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).replace("\n", " ")[:300]
        raise WeightsError(f"{p} does not hold the VGG16 layout progvc.bench.perceptual documents: {first}") from exc
    return PerceptualModels(nets.to(device), device)


def _vgg_stages(features: Any, x: Any, l2pool: bool) -> list[Any]:
    """relu1_2 .. relu5_3 of ``features`` for ``x`` (N,3,H,W) normalised; L2 pooling for DISTS."""
    import torch
    import torch.nn.functional as F

    out = []
    for i, layer in enumerate(features):
        if i > TAPS[-1]:
            break
        if l2pool and isinstance(layer, torch.nn.MaxPool2d):
            a = torch.tensor([0.5, 1.0, 0.5], dtype=x.dtype, device=x.device)  # np.hanning(5)[1:-1]
            g = (a[:, None] * a[None, :]) / (a.sum() ** 2)
            g = g.expand(x.shape[1], 1, 3, 3)
            x = torch.sqrt(F.conv2d(x * x, g, stride=2, padding=1, groups=x.shape[1]) + 1e-12)
        else:
            x = layer(x)
        if i in TAPS:
            out.append(x)
    return out


class PerceptualModels:
    """Loaded networks; scores distorted sequences against the reference given by ``set_reference``."""

    def __init__(self, nets: Any, device: str = "cpu") -> None:
        self.nets = nets
        self.device = device
        self.names: tuple[str, ...] = tuple(
            n for n, ok in (("lpips", "lpips" in nets), ("dists", "dists" in nets)) if ok
        ) + ("fid_vgg", "kid_vgg")
        self.ref: np.ndarray | None = None
        self._ref_vectors: np.ndarray | None = None

    def _to_unit(self, frame: np.ndarray) -> Any:
        """(H,W,3) uint8 -> (1,3,H,W) float32 in [0, 1] on the device."""
        import torch

        return torch.from_numpy(frame).to(self.device).permute(2, 0, 1)[None].float() / 255.0

    def _normalise(self, frame: np.ndarray) -> Any:
        """(H,W,3) uint8 -> (1,3,H,W) float32 normalised with the ImageNet mean and std."""
        import torch

        x = self._to_unit(frame)
        mean = torch.tensor(_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(_STD, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def _vectors(self, relu5_3: Any) -> np.ndarray:
        """(1,512,h,w) -> (h*w, 512) float64 feature vectors for FID / KID."""
        return relu5_3[0].flatten(1).T.double().cpu().numpy()

    def set_reference(self, ref: np.ndarray) -> None:
        """Remember the ``(T,H,W,3)`` uint8 reference and cache its FID / KID feature vectors."""
        import torch

        self.ref = ref
        with torch.no_grad():
            feats = [self._vectors(_vgg_stages(self.nets["vgg16"]["features"], self._normalise(f), False)[-1])
                     for f in ref]
        self._ref_vectors = _subsample(np.concatenate(feats))

    def score(self, dist: np.ndarray) -> dict[str, float]:
        """Mean per-frame LPIPS / DISTS and the sequence FID / KID of ``dist`` ((T,H,W,3) uint8)."""
        import torch

        if self.ref is None or self._ref_vectors is None:
            raise RuntimeError("call set_reference before score")
        features = self.nets["vgg16"]["features"]
        per_frame: dict[str, list[float]] = {n: [] for n in self.names[:-2]}
        vectors = []
        with torch.no_grad():
            for r, d in zip(self.ref, dist, strict=True):
                xr, xd = self._normalise(r), self._normalise(d)
                x = torch.cat([xr, xd])  # (2,3,H,W)
                stages = _vgg_stages(features, x, l2pool=False)
                vectors.append(self._vectors(stages[-1][1:]))
                if "lpips" in per_frame:
                    per_frame["lpips"].append(_lpips(self.nets["lpips"], stages))
                if "dists" in per_frame:
                    raw = torch.cat([self._to_unit(r), self._to_unit(d)])  # DISTS compares raw [0,1]
                    stages = [raw, *_vgg_stages(features, x, l2pool=True)]
                    per_frame["dists"].append(_dists(self.nets["dists"], stages))
        out = {n: float(np.mean(v)) for n, v in per_frame.items()}
        dist_vectors = _subsample(np.concatenate(vectors))
        out["fid_vgg"] = frechet_distance(self._ref_vectors, dist_vectors)
        out["kid_vgg"] = kernel_distance(self._ref_vectors, dist_vectors)
        return out


def _lpips(heads: Any, stages: list[Any]) -> float:
    """LPIPS between item 0 and item 1 of each (2,C,h,w) stage."""
    total = 0.0
    for k, f in enumerate(stages):
        n = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)  # unit norm over channels
        diff = (n[0:1] - n[1:2]) ** 2
        total += float(heads[f"lin{k}"](diff).mean())
    return total


def _dists(params: Any, stages: list[Any]) -> float:
    """DISTS between item 0 and item 1 of each (2,C,h,w) stage (image first, then five VGG stages)."""
    import torch

    c1 = c2 = 1e-6
    w_sum = params["alpha"].sum() + params["beta"].sum()
    alpha = torch.split(params["alpha"] / w_sum, DISTS_CHANNELS, dim=1)
    beta = torch.split(params["beta"] / w_sum, DISTS_CHANNELS, dim=1)
    sim = 0.0
    for k, f in enumerate(stages):
        x, y = f[0:1], f[1:2]
        mx, my = x.mean([2, 3], keepdim=True), y.mean([2, 3], keepdim=True)
        s1 = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
        vx, vy = ((x - mx) ** 2).mean([2, 3], keepdim=True), ((y - my) ** 2).mean([2, 3], keepdim=True)
        cov = (x * y).mean([2, 3], keepdim=True) - mx * my
        s2 = (2 * cov + c2) / (vx + vy + c2)
        sim += float((alpha[k] * s1).sum() + (beta[k] * s2).sum())
    return 1.0 - sim


def _subsample(v: np.ndarray) -> np.ndarray:
    """At most MAX_FEATURE_VECTORS rows of ``v`` (N, D), chosen with a fixed seed."""
    if v.shape[0] <= MAX_FEATURE_VECTORS:
        return v
    idx = np.random.default_rng(0).choice(v.shape[0], MAX_FEATURE_VECTORS, replace=False)
    return v[np.sort(idx)]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (N,D) and ``b`` (M,D)."""
    from scipy import linalg

    if a.shape[0] < 2 or b.shape[0] < 2:
        return math.nan
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # few vectors give singular covariances; sqrtm still converges
        warnings.simplefilter("ignore")
        covmean = np.real(linalg.sqrtm(s_a @ s_b))
    fid = float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean))
    return max(fid, 0.0)  # a distance; tiny negative values are round-off


def kernel_distance(a: np.ndarray, b: np.ndarray, subsets: int = 10, size: int = 1000) -> float:
    """Unbiased MMD² with the cubic polynomial kernel (KID), averaged over fixed random subsets."""
    n = min(a.shape[0], b.shape[0], size)
    if n < 2:
        return math.nan
    d = a.shape[1]
    rng = np.random.default_rng(0)
    total = 0.0
    for _ in range(subsets):
        x = a[rng.choice(a.shape[0], n, replace=False)]
        y = b[rng.choice(b.shape[0], n, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off = n * (n - 1)
        total += (kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean()
    return float(total / subsets)
