"""Fast tier for trusted verdicts: the data format between the processes, the grader's name lookup, tamper hints."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import torch

from torchsteps.sandbox import crossing
from torchsteps.sandbox.grader import free_names
from torchsteps.nbgrader_plugins.tamper import find_tampering


def roundtrip(obj):
    encoder = crossing.Encoder()
    data = crossing.dumps(encoder, encoder.encode(obj))
    message = crossing.loads(data)
    decoder = crossing.Decoder(message)
    return decoder.decode(message["tree"]), encoder, decoder


@pytest.mark.parametrize("value", [
    None, True, 0, -(2**70), 2.5, -0.0, float("inf"), 1 + 2j, "ü", b"\x00\xff", (1, [2, {"k": (3,)}]), {1, 2}, frozenset({3}),
    slice(1, None, 2), range(2, 9, 3), Ellipsis, torch.Size([2, 0]), torch.bfloat16, torch.device("meta"),
    np.float32(1.5), np.int8(-3), np.bool_(True), np.dtype("uint16"), np.float64, int, float,
])
def test_plain_values_keep_type_and_value(value):
    back, _, _ = roundtrip(value)
    assert type(back) is type(value) and back == value


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8,
                                   torch.int16, torch.int32, torch.int64, torch.bool, torch.complex64])
def test_tensors_keep_dtype_shape_strides_and_bytes(dtype):
    base = (torch.randn(4, 6) * 50).to(dtype)
    view = base.T[1:, ::2]  # non-contiguous, with a storage offset
    (back_base, back_view), _, _ = roundtrip((base, view))
    for original, copy in ((base, back_base), (view, back_view)):
        assert copy.dtype == dtype and copy.shape == original.shape and copy.stride() == original.stride()
        assert copy.storage_offset() == original.storage_offset()
        assert crossing.same_values(copy, original)
    # Sharing inside one message survives: the view still views the base.
    back_base.view(-1)[:] = torch.zeros((), dtype=dtype)
    assert not back_view.any()


def test_grad_flags_meta_parameters_generators_and_modules():
    leaf = torch.randn(3, requires_grad=True)
    computed = leaf * 2
    gen = torch.Generator().manual_seed(7)
    gen.manual_seed(7)
    torch.rand(3, generator=gen)
    layer = torch.nn.Linear(3, 2)
    values, _, _ = roundtrip([leaf, computed, torch.empty(2, 5, device="meta"), torch.nn.Parameter(torch.ones(2)), gen, layer])
    b_leaf, b_computed, b_meta, b_param, b_gen, b_layer = values
    assert b_leaf.requires_grad and b_leaf.is_leaf
    assert b_computed.requires_grad and not b_computed.is_leaf
    assert b_meta.device.type == "meta" and b_meta.shape == (2, 5)
    assert type(b_param) is torch.nn.Parameter
    assert torch.equal(torch.rand(4, generator=b_gen), torch.rand(4, generator=gen))
    assert type(b_layer) is torch.nn.Linear and torch.equal(b_layer.weight, layer.weight) and torch.equal(b_layer.bias, layer.bias)


def test_ndarray_views_keep_their_layout_and_base():
    base = np.arange(24.0).reshape(4, 6)
    gapped, flipped = base[:, ::2], base[::-1]
    (b_base, b_gapped, b_flipped), _, _ = roundtrip((base, gapped, flipped))
    for original, copy in ((base, b_base), (gapped, b_gapped), (flipped, b_flipped)):
        assert copy.dtype == original.dtype and copy.shape == original.shape and copy.strides == original.strides
        assert np.array_equal(copy, original)
    assert np.shares_memory(b_gapped, b_base) and np.shares_memory(b_flipped, b_base)
    readonly = np.ones(3)
    readonly.flags.writeable = False
    assert not roundtrip(readonly)[0].flags.writeable


def test_unsupported_objects_become_named_stand_ins_that_pass_no_check():
    class FakeTensor(torch.Tensor):
        pass

    fake = torch.ones(2).as_subclass(FakeTensor)
    back, _, _ = roundtrip([fake, lambda: 1, np.array([object()], dtype=object)])
    assert all(isinstance(x, crossing.Opaque) for x in back)
    assert type(back[0]).__qualname__.endswith("FakeTensor")


def test_exceptions_keep_an_allowed_type_and_the_message():
    class MyError(ValueError):
        pass

    (a, b, c), _, _ = roundtrip([MyError("bad shape"), KeyboardInterrupt(), SystemExit(3)])
    assert type(a) is ValueError and "bad shape" in str(a) and "MyError" in str(a)
    assert type(b) is TimeoutError
    assert type(c) is Exception


def test_slots_and_references_between_messages():
    arg = [torch.zeros(2), np.ones(3)]
    encoder = crossing.Encoder()
    crossing.dumps(encoder, encoder.encode(arg))
    assert [type(x) for x in encoder.slots] == [list, torch.Tensor, np.ndarray]
    # The other side answers "the same object as slot 1": the receiver gets its own object back.
    reply = crossing.Encoder(refs={id(arg[0]): 1})
    message = crossing.loads(crossing.dumps(reply, reply.encode([arg[0], 5])))
    back = crossing.Decoder(message, ref_slots=encoder.slots).decode(message["tree"])
    assert back[0] is arg[0] and back[1] == 5


def _message(tree, blobs=()):
    header = json.dumps({"tree": tree, "blobs": [[sum(map(len, blobs[:i])), len(b)] for i, b in enumerate(blobs)]}).encode()
    return crossing.MAGIC + struct.pack("<Q", len(header)) + header + b"".join(blobs)


@pytest.mark.parametrize("tree,blobs", [
    ({"t": "tensor", "dtype": "float32", "device": "cpu", "shape": [4], "stride": [1], "offset": 0, "storage": 0}, [b"\0" * 8]),
    ({"t": "tensor", "dtype": "float32", "device": "cpu", "shape": [2], "stride": [1], "offset": 5, "storage": 0}, [b"\0" * 8]),
    ({"t": "ndarray", "region": 0, "dtype": "<f8", "shape": [3], "strides": [-8], "offset": 0}, [b"\0" * 24]),
    ({"t": "ndarray", "region": 0, "dtype": "|O", "shape": [1], "strides": [8], "offset": 0}, [b"\0" * 8]),
    ({"t": "dtype", "v": "Tensor"}, []),
    ({"t": "pickle", "v": 1}, []),
    ({"t": "ref", "slot": 0}, []),
])
def test_malformed_or_out_of_bounds_data_is_refused(tree, blobs):
    message = crossing.loads(_message(tree, blobs))
    with pytest.raises(crossing.CrossingError):
        crossing.Decoder(message).decode(message["tree"])


def test_a_pickle_is_never_loaded():
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    for data in (pickle.dumps(Boom()), crossing.MAGIC + struct.pack("<Q", 9) + pickle.dumps(Boom())):
        with pytest.raises(crossing.CrossingError):
            crossing.loads(data)


def test_free_names_are_what_a_test_cell_reads_but_does_not_bind():
    source = (
        "import random as _r\n_x = torch.ones(2)\nfor _i in range(3):\n    check_tensor(f(_x), g(_i), 'w')\n"
        "def _h(a):\n    return a + k\nwith open('x') as _f:\n    pass\n[_z for _z in items]\n"
    )
    assert free_names(source) == {"torch", "check_tensor", "f", "g", "range", "open", "k", "items"}


@pytest.mark.parametrize("source", [
    "%matplotlib inline", "%timeit x + 1", "%%time\ny = 2 * 3", "!pip install rich", "%pip install rich",
    "from IPython.display import display\ndisplay(1)\nprint(2)",
    "import pathlib\ntext = pathlib.Path('data.csv').read_text()", "with open('data.csv') as f:\n    rows = f.read()",
    "import numpy as np\nd = np.load('weights.npy')",
])
def test_everyday_notebook_habits_are_not_flagged(source):
    assert find_tampering([(0, source)]) == []


@pytest.mark.parametrize("source,what", [
    ("g = get_ipython\ng().events.register('post_run_cell', print)", "get_ipython"),
    ("%%time\nimport checks\nchecks.check_tensor = print", "checks.check_tensor"),
    ("!curl http://example.com", "get_ipython"),
    ("%%writefile checks.py\ndef check_tensor(*a): pass", "get_ipython"),
])
def test_tampering_is_still_hinted(source, what):
    findings = find_tampering([(0, source)])
    assert any(what in f.what for f in findings), findings


def test_same_values_on_views_with_odd_strides():
    """Regression: a (n, 1) view with stride 2 on its last dimension could not be compared as bytes."""
    from torchsteps.sandbox.crossing import same_values

    for dtype in (torch.bfloat16, torch.int64, torch.float32):
        base = torch.arange(12).to(dtype).reshape(6, 2)
        view = base[:, :1].t().reshape(1, 6)[:, ::2]  # stride 4 on the last dimension
        assert same_values(view, view.clone())
        odd = torch.arange(12).to(dtype).as_strided((3, 1), (2, 2))
        assert same_values(odd, odd.clone())
        assert not same_values(odd, odd.clone() + 1)


def test_memory_region_of_a_view_into_a_received_buffer_starts_at_the_buffer():
    """Regression: a strided view decoded over np.frombuffer bytes measured its offset from its own first
    element, the grader from the buffer's start, so a correct shared view was refused."""
    from torchsteps.sandbox.crossing import memory_region

    raw = np.frombuffer(bytearray(np.arange(8.0).tobytes()), np.uint8)
    view = np.lib.stride_tricks.as_strided(raw[8:16].view(np.float64), shape=(3,), strides=(16,))
    low, high, _ = memory_region(view)
    assert (low, high) == (raw.__array_interface__["data"][0], raw.__array_interface__["data"][0] + 64)
