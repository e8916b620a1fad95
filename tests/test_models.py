"""clnp.models: the built-in feature extractors by spec (no torchvision)."""

from __future__ import annotations

import pytest
import torch

from clnp.models import MODELS, alexnet, build, resnet18


def test_resnet18_spec_with_8_filters_returns_64_features_on_cifar_sized_images():
    model = build("resnet18:8", (3, 32, 32)).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 64)


def test_resnet18_spec_without_filters_has_gems_20_and_takes_the_data_channels_and_any_image_size():
    model = build("resnet18", (1, 28, 28)).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 160)
    assert resnet18(4).eval()(torch.randn(2, 3, 64, 64)).shape == (2, 32)


def test_resnet18_has_gems_layer_shapes_a_stride_1_stem_and_1x1_shortcuts_where_the_width_changes():
    model = resnet18(20)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 20 and convs[0].stride == (1, 1) and convs[0].kernel_size == (3, 3)
    assert [c.out_channels for c in convs if c.kernel_size == (1, 1)] == [40, 80, 160]


def test_alexnet_spec_returns_2048_features_with_gpms_layer_shapes():
    model = build("alexnet", (3, 32, 32)).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 2048)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.out_channels, c.kernel_size[0]) for c in convs] == [(64, 4), (128, 3), (256, 2)]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(1024, 2048), (2048, 2048)]
    assert alexnet(1, 28).eval()(torch.randn(2, 1, 28, 28)).shape == (2, 2048)


def test_models_registry_names_every_spec():
    assert set(MODELS) == {"resnet18", "alexnet"}


@pytest.mark.parametrize("spec, shape, words", [
    ("vgg16", (3, 32, 32), ["'vgg16'", "resnet18, resnet18:NF or alexnet"]),
    ("resnet18:x", (3, 32, 32), ["'resnet18:x'", "positive integer"]),
    ("resnet18:0", (3, 32, 32), ["'resnet18:0'", "positive integer"]),
    ("alexnet:3", (3, 32, 32), ["'alexnet:3'", "no argument"]),
    ("alexnet", (3, 16, 16), ["'alexnet'", "22x22"]),
    ("resnet18", (784,), ["'resnet18'", "(channels, height, width)"]),
    ("", (3, 32, 32), ["''", "expected mlp:"]),
])
def test_a_bad_model_spec_is_refused_with_a_message_naming_the_spec_and_what_was_expected(spec, shape, words):
    with pytest.raises(ValueError) as info:
        build(spec, shape)
    for word in words:
        assert word in str(info.value), str(info.value)
