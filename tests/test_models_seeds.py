"""The seeds' published numbers, reproduced (SPEC 2.1-2.5): summary tables, parameter counts, blocks, init.

The two tables below are transcribed from the seed notebooks (whitespace
condensed): seed 003's ``torchsummary`` of the CIFAR-10 SENet18 at 2x3x32x32
and seed 004's ``paddle.summary`` of SqueezeNet 1.0 with 4 classes at
1x3x224x224.  They are the expected data of the tests that rebuild them.
"""

import importlib.util
import math
import re
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddle import nn

from paddle_palm.models import build_model
from paddle_palm.models.senet import PreActBlock, SEBasicBlock
from paddle_palm.models.summary import count_parameters

# Seed 003 ("Pytorch CIFAR10图像分类 SENet篇"): torchsummary of SENet18(num_classes=10), input (2, 3, 32, 32).
SEED_003_TABLE = """\
Conv2d-1  [-1, 64, 32, 32]  1,728
BatchNorm2d-2  [-1, 64, 32, 32]  128
BatchNorm2d-3  [-1, 64, 32, 32]  128
Conv2d-4  [-1, 64, 32, 32]  36,864
BatchNorm2d-5  [-1, 64, 32, 32]  128
Conv2d-6  [-1, 64, 32, 32]  36,864
Conv2d-7  [-1, 4, 1, 1]  260
Conv2d-8  [-1, 64, 1, 1]  320
SEBlock-9  [-1, 64, 32, 32]  0
BatchNorm2d-10  [-1, 64, 32, 32]  128
Conv2d-11  [-1, 64, 32, 32]  36,864
BatchNorm2d-12  [-1, 64, 32, 32]  128
Conv2d-13  [-1, 64, 32, 32]  36,864
Conv2d-14  [-1, 4, 1, 1]  260
Conv2d-15  [-1, 64, 1, 1]  320
SEBlock-16  [-1, 64, 32, 32]  0
BatchNorm2d-17  [-1, 64, 32, 32]  128
Conv2d-18  [-1, 128, 16, 16]  8,192
Conv2d-19  [-1, 128, 16, 16]  73,728
BatchNorm2d-20  [-1, 128, 16, 16]  256
Conv2d-21  [-1, 128, 16, 16]  147,456
Conv2d-22  [-1, 8, 1, 1]  1,032
Conv2d-23  [-1, 128, 1, 1]  1,152
SEBlock-24  [-1, 128, 16, 16]  0
BatchNorm2d-25  [-1, 128, 16, 16]  256
Conv2d-26  [-1, 128, 16, 16]  147,456
BatchNorm2d-27  [-1, 128, 16, 16]  256
Conv2d-28  [-1, 128, 16, 16]  147,456
Conv2d-29  [-1, 8, 1, 1]  1,032
Conv2d-30  [-1, 128, 1, 1]  1,152
SEBlock-31  [-1, 128, 16, 16]  0
BatchNorm2d-32  [-1, 128, 16, 16]  256
Conv2d-33  [-1, 256, 8, 8]  32,768
Conv2d-34  [-1, 256, 8, 8]  294,912
BatchNorm2d-35  [-1, 256, 8, 8]  512
Conv2d-36  [-1, 256, 8, 8]  589,824
Conv2d-37  [-1, 16, 1, 1]  4,112
Conv2d-38  [-1, 256, 1, 1]  4,352
SEBlock-39  [-1, 256, 8, 8]  0
BatchNorm2d-40  [-1, 256, 8, 8]  512
Conv2d-41  [-1, 256, 8, 8]  589,824
BatchNorm2d-42  [-1, 256, 8, 8]  512
Conv2d-43  [-1, 256, 8, 8]  589,824
Conv2d-44  [-1, 16, 1, 1]  4,112
Conv2d-45  [-1, 256, 1, 1]  4,352
SEBlock-46  [-1, 256, 8, 8]  0
BatchNorm2d-47  [-1, 256, 8, 8]  512
Conv2d-48  [-1, 512, 4, 4]  131,072
Conv2d-49  [-1, 512, 4, 4]  1,179,648
BatchNorm2d-50  [-1, 512, 4, 4]  1,024
Conv2d-51  [-1, 512, 4, 4]  2,359,296
Conv2d-52  [-1, 32, 1, 1]  16,416
Conv2d-53  [-1, 512, 1, 1]  16,896
SEBlock-54  [-1, 512, 4, 4]  0
BatchNorm2d-55  [-1, 512, 4, 4]  1,024
Conv2d-56  [-1, 512, 4, 4]  2,359,296
BatchNorm2d-57  [-1, 512, 4, 4]  1,024
Conv2d-58  [-1, 512, 4, 4]  2,359,296
Conv2d-59  [-1, 32, 1, 1]  16,416
Conv2d-60  [-1, 512, 1, 1]  16,896
SEBlock-61  [-1, 512, 4, 4]  0
Linear-62  [-1, 10]  5,130
"""

# Seed 004 ("SqueezeNet 眼疾识别", Paddle version): paddle.summary(SqueezeNet("1_0", num_classes=4), (1, 3, 224, 224)).
SEED_004_TABLE = """\
Conv2D-1  [[1, 3, 224, 224]]  [1, 96, 109, 109]  14,208
ReLU-1  [[1, 96, 109, 109]]  [1, 96, 109, 109]  0
MaxPool2D-1  [[1, 96, 109, 109]]  [1, 96, 54, 54]  0
Conv2D-2  [[1, 96, 54, 54]]  [1, 16, 54, 54]  1,552
ReLU-2  [[1, 16, 54, 54]]  [1, 16, 54, 54]  0
Conv2D-3  [[1, 16, 54, 54]]  [1, 64, 54, 54]  1,088
ReLU-3  [[1, 64, 54, 54]]  [1, 64, 54, 54]  0
Conv2D-4  [[1, 16, 54, 54]]  [1, 64, 54, 54]  9,280
ReLU-4  [[1, 64, 54, 54]]  [1, 64, 54, 54]  0
Fire-1  [[1, 96, 54, 54]]  [1, 128, 54, 54]  0
Conv2D-5  [[1, 128, 54, 54]]  [1, 16, 54, 54]  2,064
ReLU-5  [[1, 16, 54, 54]]  [1, 16, 54, 54]  0
Conv2D-6  [[1, 16, 54, 54]]  [1, 64, 54, 54]  1,088
ReLU-6  [[1, 64, 54, 54]]  [1, 64, 54, 54]  0
Conv2D-7  [[1, 16, 54, 54]]  [1, 64, 54, 54]  9,280
ReLU-7  [[1, 64, 54, 54]]  [1, 64, 54, 54]  0
Fire-2  [[1, 128, 54, 54]]  [1, 128, 54, 54]  0
Conv2D-8  [[1, 128, 54, 54]]  [1, 32, 54, 54]  4,128
ReLU-8  [[1, 32, 54, 54]]  [1, 32, 54, 54]  0
Conv2D-9  [[1, 32, 54, 54]]  [1, 128, 54, 54]  4,224
ReLU-9  [[1, 128, 54, 54]]  [1, 128, 54, 54]  0
Conv2D-10  [[1, 32, 54, 54]]  [1, 128, 54, 54]  36,992
ReLU-10  [[1, 128, 54, 54]]  [1, 128, 54, 54]  0
Fire-3  [[1, 128, 54, 54]]  [1, 256, 54, 54]  0
MaxPool2D-2  [[1, 256, 54, 54]]  [1, 256, 27, 27]  0
Conv2D-11  [[1, 256, 27, 27]]  [1, 32, 27, 27]  8,224
ReLU-11  [[1, 32, 27, 27]]  [1, 32, 27, 27]  0
Conv2D-12  [[1, 32, 27, 27]]  [1, 128, 27, 27]  4,224
ReLU-12  [[1, 128, 27, 27]]  [1, 128, 27, 27]  0
Conv2D-13  [[1, 32, 27, 27]]  [1, 128, 27, 27]  36,992
ReLU-13  [[1, 128, 27, 27]]  [1, 128, 27, 27]  0
Fire-4  [[1, 256, 27, 27]]  [1, 256, 27, 27]  0
Conv2D-14  [[1, 256, 27, 27]]  [1, 48, 27, 27]  12,336
ReLU-14  [[1, 48, 27, 27]]  [1, 48, 27, 27]  0
Conv2D-15  [[1, 48, 27, 27]]  [1, 192, 27, 27]  9,408
ReLU-15  [[1, 192, 27, 27]]  [1, 192, 27, 27]  0
Conv2D-16  [[1, 48, 27, 27]]  [1, 192, 27, 27]  83,136
ReLU-16  [[1, 192, 27, 27]]  [1, 192, 27, 27]  0
Fire-5  [[1, 256, 27, 27]]  [1, 384, 27, 27]  0
Conv2D-17  [[1, 384, 27, 27]]  [1, 48, 27, 27]  18,480
ReLU-17  [[1, 48, 27, 27]]  [1, 48, 27, 27]  0
Conv2D-18  [[1, 48, 27, 27]]  [1, 192, 27, 27]  9,408
ReLU-18  [[1, 192, 27, 27]]  [1, 192, 27, 27]  0
Conv2D-19  [[1, 48, 27, 27]]  [1, 192, 27, 27]  83,136
ReLU-19  [[1, 192, 27, 27]]  [1, 192, 27, 27]  0
Fire-6  [[1, 384, 27, 27]]  [1, 384, 27, 27]  0
Conv2D-20  [[1, 384, 27, 27]]  [1, 64, 27, 27]  24,640
ReLU-20  [[1, 64, 27, 27]]  [1, 64, 27, 27]  0
Conv2D-21  [[1, 64, 27, 27]]  [1, 256, 27, 27]  16,640
ReLU-21  [[1, 256, 27, 27]]  [1, 256, 27, 27]  0
Conv2D-22  [[1, 64, 27, 27]]  [1, 256, 27, 27]  147,712
ReLU-22  [[1, 256, 27, 27]]  [1, 256, 27, 27]  0
Fire-7  [[1, 384, 27, 27]]  [1, 512, 27, 27]  0
MaxPool2D-3  [[1, 512, 27, 27]]  [1, 512, 13, 13]  0
Conv2D-23  [[1, 512, 13, 13]]  [1, 64, 13, 13]  32,832
ReLU-23  [[1, 64, 13, 13]]  [1, 64, 13, 13]  0
Conv2D-24  [[1, 64, 13, 13]]  [1, 256, 13, 13]  16,640
ReLU-24  [[1, 256, 13, 13]]  [1, 256, 13, 13]  0
Conv2D-25  [[1, 64, 13, 13]]  [1, 256, 13, 13]  147,712
ReLU-25  [[1, 256, 13, 13]]  [1, 256, 13, 13]  0
Fire-8  [[1, 512, 13, 13]]  [1, 512, 13, 13]  0
Dropout-1  [[1, 512, 13, 13]]  [1, 512, 13, 13]  0
Conv2D-26  [[1, 512, 13, 13]]  [1, 4, 13, 13]  2,052
ReLU-26  [[1, 4, 13, 13]]  [1, 4, 13, 13]  0
AdaptiveAvgPool2D-1  [[1, 4, 13, 13]]  [1, 4, 1, 1]  0
"""

# The seed's PyTorch layer types and Paddle's; the seed's block class is printed as SEBlock
# (its code calls it PreActBlock, as SPEC 2.1 does).
TORCH_TO_PADDLE = {"Conv2d": "Conv2D", "BatchNorm2d": "BatchNorm2D", "Linear": "Linear", "SEBlock": "PreActBlock"}

ROW_003 = re.compile(r"^(?P<type>\w+)-\d+\s+\[(?P<out>[-\d, ]+)\]\s+(?P<params>[\d,]+)$")
ROW_PADDLE = re.compile(
    r"^\s*(?P<name>(?P<type>\w+)-\d+)\s+(?P<inp>\[\[[-\d, ]+\]\])\s+(?P<out>\[[-\d, ]+\])\s+(?P<params>[\d,]+)\s*$"
)


def _ints(text):
    return [int(v) for v in text.replace("[", "").replace("]", "").split(",")]


def seed_003_rows():
    """``(paddle type, output shape without batch, parameter count)`` of each seed 003 row."""
    rows = []
    for line in SEED_003_TABLE.splitlines():
        m = ROW_003.match(line.strip())
        assert m, line
        rows.append((TORCH_TO_PADDLE[m["type"]], _ints(m["out"])[1:], int(m["params"].replace(",", ""))))
    return rows


def paddle_rows(text):
    """``(name, type, input shapes, output shape, Param #)`` of each row of a ``paddle.summary`` table."""
    rows = []
    for line in text.splitlines():
        m = ROW_PADDLE.match(line)
        if m:
            rows.append((m["name"], m["type"], m["inp"], _ints(m["out"]), int(m["params"].replace(",", ""))))
    return rows


def layer_rows(model, input_shape):
    """The layers ``paddle.summary`` lists, in its order: ``(type, output shape, trainable parameters)``.

    Same selection as ``paddle.summary`` (every sublayer but containers, rows in
    the order the forward pass finishes them), counting only trainable
    parameters as ``torchsummary`` does.
    """
    rows = []

    def hook(layer, inputs, output):
        trainable = sum(
            int(math.prod(p.shape))
            for p in layer._parameters.values()
            if p is not None and p.trainable and not p.stop_gradient
        )
        rows.append((type(layer).__name__, list(output.shape), trainable))

    hooks = [
        layer.register_forward_post_hook(hook)
        for layer in model.sublayers()
        if not isinstance(layer, (nn.Sequential, nn.LayerList))
    ]
    try:
        model.eval()
        with paddle.no_grad():
            model(paddle.rand(list(input_shape)))
    finally:
        for h in hooks:
            h.remove()
    return rows


def load_tool(repo_root, name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", repo_root / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# SPEC 2.2: senet18_cifar


def test_senet18_cifar_reproduces_the_seed_003_table_layer_for_layer():
    expected = seed_003_rows()
    got = layer_rows(build_model("senet18_cifar"), (2, 3, 32, 32))
    assert len(got) == len(expected) == 62
    for i, ((etype, eshape, eparams), (gtype, gshape, gparams)) in enumerate(zip(expected, got), start=1):
        assert (gtype, gshape[1:], gparams) == (etype, eshape, eparams), f"row {i}"
        assert gshape[0] == 2
    assert sum(r[2] for r in got) == 11_260_354
    # The stage outputs of SPEC 2.2.
    block_shapes = [shape[1:] for kind, shape, _ in got if kind == "PreActBlock"]
    assert block_shapes[1::2] == [[64, 32, 32], [128, 16, 16], [256, 8, 8], [512, 4, 4]]
    assert got[-1][1] == [2, 10]


def test_tools_summary_for_senet18_cifar_matches_seed_003(repo_root, capsys):
    tool = load_tool(repo_root, "summary")
    assert tool.main(["--arch", "senet18_cifar", "--input-shape", "2,3,32,32"]) == 0
    text = capsys.readouterr().out
    rows = paddle_rows(text)
    expected = seed_003_rows()
    assert len(rows) == len(expected)
    for (etype, eshape, eparams), (_, gtype, _, gshape, gparams) in zip(expected, rows):
        assert gtype == etype and gshape[1:] == eshape
        # Paddle also counts BatchNorm's running mean and variance (non-trainable).
        assert gparams == (2 * eparams if gtype == "BatchNorm2D" else eparams)
    assert "Trainable params: 11,260,354" in text
    assert text.rstrip().splitlines()[-1].startswith("Total params: ")
    assert "trainable 11,260,354" in text.rstrip().splitlines()[-1]


# SPEC 2.5: squeezenet1_0 / squeezenet1_1


def test_tools_summary_prints_the_seed_004_table(repo_root):
    # A fresh process, so that the layer numbers (Conv2D-1, Fire-1, ...) start at 1 as in the seed.
    result = subprocess.run(
        [sys.executable, "tools/summary.py", "--arch", "squeezenet1_0", "--num-classes", "4"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    got = paddle_rows(result.stdout)
    expected = paddle_rows(SEED_004_TABLE)
    assert len(expected) == 65
    assert got == expected
    assert [r[3][-1] for r in got if r[1] == "MaxPool2D"] == [54, 27, 13]
    assert got[0][3] == [1, 96, 109, 109]
    assert "Total params: 737,476" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("Total params: 737,476")


def test_summary_tool_rejects_bad_arguments_in_one_line(repo_root, capsys):
    tool = load_tool(repo_root, "summary")
    for argv in (["--arch", "resnet50", "--input-shape", "1,3,224"], ["--arch", "resnet51"]):
        with pytest.raises(SystemExit) as info:
            tool.main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1
        assert ("N,C,H,W" in err) if "--input-shape" in argv else ("resnet50" in err)


def test_summary_tool_reports_a_wrong_input_shape_without_traceback(repo_root, capsys):
    tool = load_tool(repo_root, "summary")
    with pytest.raises(SystemExit) as info:
        tool.cli.run(tool.main, ["--arch", "squeezenet1_1", "--input-shape", "1,1,224,224"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: squeezenet1_1 expects input [N, 3, H, W]")
    assert len(err.strip().splitlines()) == 1


# Parameter counts (trainable; BatchNorm statistics are counted apart)


@pytest.mark.parametrize(
    "name, num_classes, trainable",
    [
        ("senet18", None, 11_510_925),  # SPEC 2.1
        ("senet18_cifar", None, 11_260_354),  # SPEC 2.2
        ("squeezenet1_0", 4, 737_476),  # SPEC 2.5, seed 004
        ("squeezenet1_1", 2, 723_522),  # SPEC 2.5
        ("resnet50", None, 23_510_081),  # SPEC 2.4
    ],
)
def test_trainable_parameter_counts(name, num_classes, trainable):
    with paddle.LazyGuard():
        model = build_model(name, num_classes=num_classes)
    assert count_parameters(model)["trainable"] == trainable


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_resnet_counts_equal_paddle_vision(depth):
    import paddle.vision.models as vision

    with paddle.LazyGuard():
        ours = count_parameters(build_model(f"resnet{depth}"))
        theirs = count_parameters(getattr(vision, f"resnet{depth}")(num_classes=1))
    assert ours == theirs


# SPEC 2.1: senet18


def test_senet18_head_and_its_seed_initialisation():
    model = build_model("senet18")
    assert list(model.linear.weight.shape) == [25088, 10]
    assert list(model.out.weight.shape) == [10, 1]
    s = 1.0 / math.sqrt(25088.0)
    w = model.out.weight.numpy()
    assert np.abs(w).max() <= s and np.ptp(w) > 0
    assert not model.out.bias.numpy().any()
    # Every conv of seed 000 has a bias (Paddle's default); the SE convs too.
    convs = [layer for layer in model.sublayers() if isinstance(layer, nn.Conv2D)]
    assert all(layer.bias is not None for layer in convs)
    # No stem down-sampling: a 3x3 stride-1 conv (SPEC 2.1).
    assert list(model.conv1.weight.shape) == [64, 3, 3, 3] and model.conv1._stride == [1, 1]


def _preact_reference(block, x):
    """SPEC 2.1's PreActBlock, written with functional ops."""
    o = F.relu(block.bn1(x))
    shortcut = block.shortcut(o) if block.shortcut is not None else x
    o = block.conv2(F.relu(block.bn2(block.conv1(o))))
    w = F.avg_pool2d(o, o.shape[2])
    w = F.sigmoid(block.fc2(F.relu(block.fc1(w))))
    return o * w + shortcut


@pytest.mark.parametrize("in_planes, planes, stride", [(32, 32, 1), (16, 32, 2)])
def test_preact_block_is_spec_2_1(in_planes, planes, stride):
    block = PreActBlock(in_planes, planes, stride, bias=True)
    block.eval()
    x = paddle.to_tensor(np.random.RandomState(0).normal(size=(2, in_planes, 8, 8)).astype("float32"))
    np.testing.assert_allclose(block(x).numpy(), _preact_reference(block, x).numpy(), rtol=1e-5, atol=1e-5)
    assert (block.shortcut is None) == (stride == 1 and in_planes == planes)
    assert list(block.fc1.weight.shape) == [planes // 16, planes, 1, 1]


# SPEC 2.3: se_resnet18_mnist and its seed bug


@pytest.mark.parametrize("double_scale", [False, True])
def test_se_basic_block_scaling(double_scale):
    block = SEBasicBlock(32, 32, 1, se_bias=False, double_scale=double_scale)
    block.eval()
    x = paddle.to_tensor(np.random.RandomState(1).normal(size=(2, 32, 6, 6)).astype("float32"))
    out = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    w = F.sigmoid(block.se.fc2(F.relu(block.se.fc1(out.mean(axis=[2, 3])))))
    scaled = out * w.unsqueeze([2, 3])
    expected = F.relu((out * scaled if double_scale else scaled) + x)
    np.testing.assert_allclose(block(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    assert block.se.fc1.bias is None and block.se.fc2.bias is None  # Linear(c, c // 16, bias=False)


def test_se_resnet18_mnist_double_scale_is_an_explicit_option():
    with paddle.LazyGuard():
        default = build_model("se_resnet18_mnist")
        buggy = build_model("se_resnet18_mnist", double_scale=True)
    blocks = [b for b in default.sublayers() if isinstance(b, SEBasicBlock)]
    assert len(blocks) == 8 and not any(b.double_scale for b in blocks)
    assert all(b.double_scale for b in buggy.sublayers() if isinstance(b, SEBasicBlock))
    assert list(default.conv1.weight.shape) == [64, 1, 3, 3] and default.conv1.bias is None
    assert list(default.linear.weight.shape) == [512, 10]


# Initialisation (SPEC 2.4, 2.5)


def test_squeezenet_initialisation():
    model = build_model("squeezenet1_1", num_classes=2)
    final = model.classifier[1]
    assert 0.006 < final.weight.numpy().std() < 0.014  # Normal(0, 0.01)
    convs = [layer for layer in model.sublayers() if isinstance(layer, nn.Conv2D)]
    assert all(not layer.bias.numpy().any() for layer in convs)
    for layer in convs[:-1]:
        w = layer.weight.numpy()
        bound = math.sqrt(6.0 / (w.size / w.shape[0]))  # Kaiming-uniform
        assert np.abs(w).max() <= bound
        if w.size > 10000:
            assert abs(w.std() - bound / math.sqrt(3.0)) < 0.1 * bound


def test_resnet_classifier_initialisation():
    model = build_model("resnet50")
    w = model.fc.weight.numpy()
    assert w.shape == (2048, 1)
    assert np.abs(w).max() <= 1.0 / math.sqrt(2048.0) and np.ptp(w) > 0
    assert not model.fc.bias.numpy().any()
    conv = model.layer3[0].conv1.conv.weight.numpy()  # 3x3, 256 -> 256
    assert abs(conv.std() - math.sqrt(2.0 / (256 * 9))) < 0.05 * math.sqrt(2.0 / (256 * 9))
