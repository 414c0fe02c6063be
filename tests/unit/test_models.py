"""The architecture registry and every registered architecture on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.models import (
    ArchitectureSpec,
    ModelKind,
    build_model,
    get_architecture,
    list_architectures,
    register_architecture,
    unregister_architecture,
)

ARCHS = [a.name for a in list_architectures()]
TORCH_ARCHS = [a.name for a in list_architectures() if a.kind == "torch"]
#: small options so the forward/backward tests take milliseconds
TINY = {
    "unet2d": {"depth": 3, "base_channels": 4},
    "unet3d": {"depth": 3, "base_channels": 4},
    "residual-unet3d": {"features": [4, 6, 8]},
    "forest": {"n_estimators": 4, "sigmas": [0.7, 1.6]},
}


def test_builtin_architectures_registered():
    assert {"unet2d", "unet3d", "residual-unet3d", "forest"} <= set(ARCHS)
    for info in list_architectures():
        assert info.dims in (2, 3)
        assert len(info.description) > 80 and info.paper and info.title


def test_unknown_architecture_suggests_close_name():
    with pytest.raises(WorkbenchError, match=r"did you mean 'unet3d'.*valid: .*unet2d"):
        get_architecture("unet_3d")


def test_duplicate_registration_is_an_error():
    spec = ArchitectureSpec("dummy-test-arch", title="t", description="d", paper="p", dims=2, defaults={},
                            receptive_field=lambda o: (1, 1, 1), divisor=lambda o: (1, 1, 1), default_patch=(1, 8, 8))
    register_architecture(spec)(lambda i, o: None)
    try:
        assert get_architecture("dummy-test-arch").kind == ModelKind.TORCH == "torch"
        assert list_architectures()[-1].name == "dummy-test-arch"  # registration order
        with pytest.raises(ValueError, match="already registered"):
            register_architecture(spec)(lambda i, o: None)
    finally:
        unregister_architecture("dummy-test-arch")
    assert "dummy-test-arch" not in [a.name for a in list_architectures()]


def test_architecture_spec_is_checked():
    fields = dict(title="t", description="d", paper="p", defaults={}, receptive_field=lambda o: (1, 1, 1),
                  divisor=lambda o: (1, 1, 1), default_patch=(1, 8, 8))
    with pytest.raises(ValueError, match="dims"):
        ArchitectureSpec("x", dims=4, **fields)
    with pytest.raises(WorkbenchError, match=r"unknown model kind 'forrest' \(did you mean 'forest'\?\)"):
        ArchitectureSpec("x", dims=2, kind="forrest", **fields)
    forest = get_architecture("forest").kind
    assert forest == ModelKind.FOREST == "forest" and type(forest) is str  # a plain value: checkpoints hold it


def test_defaults_are_copied_not_shared():
    info = get_architecture("residual-unet3d")
    d = info.defaults
    d["features"].append(999)
    assert 999 not in info.defaults["features"]


def test_unknown_option_is_a_clear_error():
    with pytest.raises(WorkbenchError, match="no option 'depthh'.*valid options"):
        build_model("unet2d", 1, 2, depthh=3)


def _odd_shape(info, batch=2):
    return (batch, 1, 13, 21) if info.dims == 2 else (batch, 1, 5, 13, 19)


@pytest.mark.parametrize("name", TORCH_ARCHS)
def test_forward_backward_on_odd_sizes(name):
    info = get_architecture(name)
    torch.manual_seed(0)
    model = info.build(1, 3, **TINY.get(name, {}))
    x = torch.randn(_odd_shape(info))
    y = model(x)
    assert y.shape == (x.shape[0], 3, *x.shape[2:])
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", TORCH_ARCHS)
@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
def test_norm_choices(name, norm):
    info = get_architecture(name)
    model = info.build(1, 2, **TINY.get(name, {}), norm=norm)
    assert model(torch.randn(_odd_shape(info))).shape[1] == 2


@pytest.mark.parametrize("name", TORCH_ARCHS)
def test_channels_last_matches_contiguous(name):
    info = get_architecture(name)
    torch.manual_seed(0)
    model = info.build(1, 2, **TINY.get(name, {})).eval()
    x = torch.randn(_odd_shape(info, 1))
    fmt = torch.channels_last if info.dims == 2 else torch.channels_last_3d
    ref = model(x)
    out = model.to(memory_format=fmt)(x.contiguous(memory_format=fmt))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ARCHS)
def test_parameter_count_and_receptive_field_sane(name):
    info = get_architecture(name)
    rf = info.receptive_field()
    assert len(rf) == 3 and all(r >= 1 for r in rf)
    if info.dims == 2:
        assert rf[0] == 1 and info.halo()[0] == 0
    assert min(rf[1:]) > 9
    n = info.parameter_count(1, 2)
    if info.kind == "torch":
        model = info.build(1, 2)
        assert n == sum(p.numel() for p in model.parameters()) and 1e4 < n < 5e7
    else:
        assert n == 0


def test_parameter_count_and_field_grow_with_depth_and_width():
    info = get_architecture("unet2d")
    assert info.parameter_count(depth=3) < info.parameter_count(depth=4)
    assert info.parameter_count(base_channels=8) < info.parameter_count(base_channels=16)
    assert info.receptive_field(depth=3)[1] < info.receptive_field(depth=4)[1]


@pytest.mark.parametrize(
    "name,options,shape",
    [
        ("unet2d", {"depth": 3, "base_channels": 8, "norm": "none"}, (1, 1, 96, 96)),
        ("unet3d", {"depth": 2, "base_channels": 4, "norm": "none", "anisotropic_levels": 0}, (1, 1, 24, 24, 24)),
        ("residual-unet3d", {"features": [4, 4], "norm": "none"}, (1, 1, 14, 36, 36)),
    ],
)
def test_receptive_field_matches_gradient_extent(name, options, shape):
    """The computed field of view equals the extent of input voxels that influence the centre output."""
    info = get_architecture(name)
    torch.manual_seed(0)
    model = info.build(1, 1, **options).double()
    x = torch.randn(shape, dtype=torch.double, requires_grad=True)
    y = model(x)
    centre = tuple(s // 2 for s in y.shape[2:])
    y[(0, 0, *centre)].backward()
    nz = (x.grad[0, 0] != 0).nonzero()
    extent = (nz.max(0).values - nz.min(0).values + 1).tolist()
    expected = list(info.receptive_field(**options))
    assert extent == (expected[1:] if info.dims == 2 else expected)


def test_traced_model_works_on_other_multiples():
    info = get_architecture("unet2d")
    model = info.build(1, 2, **TINY["unet2d"]).eval()
    traced = torch.jit.trace(model, torch.randn(1, 1, 32, 32), check_trace=False)
    x = torch.randn(2, 1, 48, 64)
    torch.testing.assert_close(traced(x), model(x))


def test_forest_features_fit_predict_and_tensor_roundtrip():
    info = get_architecture("forest")
    rng = np.random.default_rng(0)
    img = rng.normal(size=(40, 40)).astype(np.float32)
    img[10:30, 10:30] += 3
    forest = info.build(1, 2, **TINY["forest"])
    feats = forest.features(img)
    assert feats.shape == (forest.n_features, 40, 40) and feats.dtype == np.float32
    y = np.zeros((40, 40), int)
    y[10:30, 10:30] = 1
    forest.fit(feats.reshape(feats.shape[0], -1).T, y.ravel())
    prob = forest.predict_slice(img)
    assert prob.shape == (2, 40, 40)
    np.testing.assert_allclose(prob.sum(0), 1, atol=1e-5)
    assert (prob.argmax(0) == y).mean() > 0.95
    again = info.build(1, 2, **TINY["forest"])
    again.load_state_dict(forest.state_dict())  # plain tensors, as stored in checkpoint.pt
    np.testing.assert_array_equal(again.predict_slice(img), prob)
    assert info.receptive_field(**TINY["forest"])[1] == 2 * (int(4 * 1.6 + 0.5) + int(4 * 0.8 + 0.5)) + 1


THREE_D = [a.name for a in list_architectures() if a.kind == "torch" and a.dims == 3]


def _ops_called(fn) -> dict[str, int]:
    with torch.profiler.profile() as prof:
        fn()
    return {e.key: e.count for e in prof.key_averages()}


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
@pytest.mark.parametrize("name", THREE_D)
def test_small_3d_convolutions_take_onednn_in_inference_and_agree(name):
    from workbench.models.blocks import _conv3d_class

    model = build_model(name, 1, 2, **TINY[name]).eval()
    x = torch.randn(1, 1, 4, 32, 32)  # N * C * D * H far below the native-path limit everywhere
    cls = _conv3d_class()
    with torch.inference_mode():
        ops = _ops_called(lambda: model(x))
        routed = model(x)
        cls.forward, saved = torch.nn.Conv3d.forward, cls.forward
        try:
            stock_ops = _ops_called(lambda: model(x))
            stock = model(x)
        finally:
            cls.forward = saved
    pointwise = sum(isinstance(m, torch.nn.Conv3d) and m.kernel_size[-2:] == (1, 1) for m in model.modules())
    assert stock_ops.get("aten::slow_conv3d_forward", 0) > pointwise  # the case the route exists for
    # every convolution but the 1 x 1 ones (faster on the native path) goes to oneDNN
    assert ops.get("aten::slow_conv3d_forward", 0) == pointwise and ops.get("aten::mkldnn_convolution", 0) > 0
    torch.testing.assert_close(routed, stock, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", THREE_D)
def test_training_and_tracing_keep_the_stock_3d_convolution(name):
    model = build_model(name, 1, 2, **TINY[name])
    x = torch.randn(1, 1, 4, 32, 32)
    model.train()
    ops = _ops_called(lambda: model(x).sum().backward())  # gradients: the stock op and its backward
    assert "aten::convolution_backward" in ops
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)
    assert "mkldnn_convolution" not in str(traced.inlined_graph)  # an exported model stays portable
    torch.testing.assert_close(traced(x), model(x), rtol=1e-4, atol=1e-5)
