"""Mistake catalogue for 03_dtypes_and_casting.ipynb."""

from torchsteps.authoring.catalogue import Exercise, NotebookCatalogue, Variant

_TO_FLOAT32_DOC = '''    """Return x converted to dtype torch.float32."""
'''
_ROUND_DOC = '''    """Round every element of x to the nearest integer (ties to even) and return int64."""
'''
_MASK_DOC = '''    """Return a bool mask that is True where x is not zero."""
'''
_SUM_DOC = '''    """Return the dtype of a + b."""
'''
_BRIGHTEN_DOC = '''    """Add amount to every pixel of img, saturating at 0 and 255."""
'''
_MEAN_DOC = '''    """Return the mean of all elements of an integer tensor, as a 0-dim float32 tensor."""
'''


def _src(header, doc, body):
    return f"{header}\n{doc}{body}"


def _to_float32(body):
    return _src("def to_float32(x):", _TO_FLOAT32_DOC, body)


def _round_to_int(body):
    return _src("def round_to_int(x):", _ROUND_DOC, body)


def _nonzero_mask(body):
    return _src("def nonzero_mask(x):", _MASK_DOC, body)


def _sum_dtype(body):
    return _src("def sum_dtype(a, b):", _SUM_DOC, body)


def _brighten(body):
    return _src("def brighten(img, amount):", _BRIGHTEN_DOC, body)


def _mean_as_float(body):
    return _src("def mean_as_float(x):", _MEAN_DOC, body)


CATALOGUE = NotebookCatalogue(
    notebook="03_dtypes_and_casting",
    exercises=(
        Exercise(
            solution_id="to_float32",
            test_ids=("test_to_float32",),
            mistakes=(
                Variant("python-float", _to_float32("    return x.to(float)\n"), kind="dtype",
                        description="x.to(float) uses Python's float, which is float64"),
                Variant("double", _to_float32("    return x.double()\n"), kind="dtype",
                        description="casts to float64 instead of float32"),
                Variant("legacy-FloatTensor", _to_float32("    return torch.FloatTensor(x)\n"),
                        kind="legacy-constructor",
                        description="torch.FloatTensor(tensor) does not convert; it raises TypeError for an int tensor"),
                Variant("legacy-Tensor", _to_float32("    return torch.Tensor(x)\n"), kind="legacy-constructor",
                        description="torch.Tensor(int_tensor) hands back an int64 tensor unchanged"),
                Variant("tolist-no-dtype", _to_float32("    return torch.tensor(x.tolist())\n"), kind="dtype",
                        description="rebuilding from Python values infers int64 for ints and bool for bools"),
                Variant('numpy-roundtrip', 'def to_float32(x):\n    return torch.from_numpy(x.numpy().astype(np.float32))\n', kind='dtype', description='NumPy has no bfloat16: x.numpy() raises for a bfloat16 tensor'),
            ),
            alternatives=(
                Variant('empty-like-copy', 'def to_float32(x):\n    out = torch.empty_like(x, dtype=torch.float32)\n    out.copy_(x)\n    return out\n'),
                Variant("float-method", _to_float32("    return x.float()\n")),
                Variant("type-method", _to_float32("    return x.type(torch.float32)\n")),
                Variant("as-tensor", _to_float32("    return torch.as_tensor(x, dtype=torch.float32)\n")),
                Variant("to-torch-float", _to_float32("    return x.to(torch.float)\n")),
                Variant("tolist-with-dtype", _to_float32("    return torch.tensor(x.tolist(), dtype=torch.float32)\n")),
            ),
        ),
        Exercise(
            solution_id="round_to_int",
            test_ids=("test_round_to_int",),
            mistakes=(
                Variant("truncate", _round_to_int("    return x.long()\n"), kind="rounding",
                        description="casting to int64 truncates toward zero instead of rounding"),
                Variant("half-up", _round_to_int("    return torch.floor(x + 0.5).long()\n"), kind="rounding",
                        description="rounds halves up (0.5 -> 1) instead of to the even neighbour"),
                Variant("stays-float", _round_to_int("    return torch.round(x)\n"), kind="dtype",
                        description="torch.round returns a float tensor; the cast to int64 is missing"),
                Variant("int32", _round_to_int("    return torch.round(x).int()\n"), kind="dtype",
                        description=".int() gives int32, not int64"),
                Variant("round-in-place", _round_to_int("    return x.round_().long()\n"), kind="mutates-input",
                        description="round_() rounds the caller's tensor in place"),
                Variant("python-round-loop",
                        _round_to_int("    return torch.tensor([round(v) for v in x.tolist()])\n"), kind="raises",
                        description="only works for 1-D input; round() of a nested list raises TypeError"),
                Variant('float32-first', 'def round_to_int(x):\n    return torch.round(x.float()).long()\n', kind='precision', description='goes through float32: 16777217.0 (float64) becomes 16777216'),
            ),
            alternatives=(
                Variant('numpy-round', 'def round_to_int(x):\n    return torch.from_numpy(np.asarray(np.round(x.numpy())).astype(np.int64))\n'),
                Variant("round-method-long", _round_to_int("    return x.round().long()\n")),
                Variant("round-type", _round_to_int("    return torch.round(x).type(torch.long)\n")),
                Variant("numpy-rint",
                        _round_to_int("    rounded = np.asarray(np.rint(x.numpy()), dtype=np.int64)\n"
                                      "    return torch.from_numpy(rounded)\n")),
                Variant("round-clone-inplace", _round_to_int("    y = x.clone()\n    y.round_()\n    return y.to(torch.int64)\n")),
            ),
        ),
        Exercise(
            solution_id="nonzero_mask",
            test_ids=("test_nonzero_mask",),
            mistakes=(
                Variant("positive-only", _nonzero_mask("    return x > 0\n"), kind="wrong-values",
                        description="x > 0 misses negative numbers (and NaN)"),
                Variant("abs-positive", _nonzero_mask("    return x.abs() > 0\n"), kind="wrong-values",
                        description="NaN > 0 is False, so NaN entries are missed"),
                Variant("where-ints", _nonzero_mask("    return torch.where(x != 0, 1, 0)\n"), kind="dtype",
                        description="returns a 0/1 int64 tensor instead of a bool mask"),
                Variant("torch-nonzero", _nonzero_mask("    return torch.nonzero(x)\n"), kind="shape",
                        description="torch.nonzero returns the indices of the non-zero elements, not a mask"),
                Variant('via-float32', 'def nonzero_mask(x):\n    return x.float() != 0\n', kind='precision', description='float32 cannot hold 1e-300: a tiny float64 value becomes 0 and counts as zero'),
                Variant('long-first', 'def nonzero_mask(x):\n    return x.long() != 0\n', kind='rounding', description='casting to int64 truncates 0.5 to 0 (and NaN to a number)'),
            ),
            alternatives=(
                Variant('logical-not', 'def nonzero_mask(x):\n    return torch.logical_not(x == 0)\n'),
                Variant("bool-method", _nonzero_mask("    return x.bool()\n")),
                Variant("to-bool", _nonzero_mask("    return x.to(torch.bool)\n")),
                Variant("torch-ne", _nonzero_mask("    return torch.ne(x, 0)\n")),
                Variant("not-equal-zero", _nonzero_mask("    return ~(x == 0)\n")),
            ),
        ),
        Exercise(
            solution_id="sum_dtype",
            test_ids=("test_sum_dtype",),
            mistakes=(
                Variant("always-float32", _sum_dtype("    return torch.float32\n"), kind="hard-coded",
                        description="hard-codes float32 whatever the inputs are"),
                Variant("guess-from-examples",
                        _sum_dtype("    if isinstance(b, torch.Tensor):\n        return b.dtype\n"
                                   "    return torch.float32\n"),
                        kind="hard-coded",
                        description="fits the visible examples (b's dtype, or float32 for a number) but not the rules"),
                Variant("promote-types", _sum_dtype("    return torch.promote_types(a.dtype, b.dtype)\n"), kind="raises",
                        description="Python numbers have no .dtype, so this raises AttributeError"),
                Variant("promote-types-as-tensor",
                        _sum_dtype("    return torch.promote_types(a.dtype, torch.as_tensor(b).dtype)\n"),
                        kind="wrong-values",
                        description="promote_types ignores the special role of Python numbers and 0-dim tensors"),
                Variant("first-operand", _sum_dtype("    return a.dtype\n"), kind="wrong-values",
                        description="assumes the result always has a's dtype"),
                Variant('zero-dim-counts-fully', 'def sum_dtype(a, b):\n    if isinstance(b, torch.Tensor):\n        return torch.promote_types(a.dtype, b.dtype)\n    return torch.result_type(a, b)\n', kind='zero-dim', description='treats a 0-dim tensor like a dimensioned one: float32 + 0-dim float64 is float32, not float64'),
            ),
            alternatives=(
                Variant("add-then-dtype", _sum_dtype("    return (a + b).dtype\n")),
                Variant("torch-add", _sum_dtype("    result = torch.add(a, b)\n    return result.dtype\n")),
                Variant("result-type-swapped", _sum_dtype("    return torch.result_type(b, a)\n")),
            ),
        ),
        Exercise(
            solution_id="brighten",
            test_ids=("test_brighten",),
            mistakes=(
                Variant("wraps", _brighten("    return img + amount\n"), kind="wrong-values",
                        description="uint8 arithmetic wraps around instead of saturating"),
                Variant("clamp-after-wrap", _brighten("    return torch.clamp(img + amount, 0, 255)\n"),
                        kind="wrong-values",
                        description="clamps in uint8, after the sum has already wrapped around"),
                Variant("no-cast-back", _brighten("    return torch.clamp(img.int() + amount, 0, 255)\n"),
                        kind="dtype", description="returns the widened int32 tensor instead of uint8"),
                Variant("float-result", _brighten("    return (img.float() + amount).clamp(0, 255)\n"), kind="dtype",
                        description="returns float32 instead of uint8"),
                Variant("writes-into-img",
                        _brighten("    img[:] = torch.clamp(img.int() + amount, 0, 255)\n    return img\n"),
                        kind="mutates-input", description="overwrites the caller's image"),
                Variant('numpy-clip-scalar', 'def brighten(img, amount):\n    wide = img.numpy().astype(np.int64) + amount\n    return torch.from_numpy(np.clip(wide, 0, 255).astype(np.uint8))\n', kind='zero-dim', description='for a 0-dim image NumPy returns a scalar, which torch.from_numpy refuses'),
                Variant('int8-widen', 'def brighten(img, amount):\n    return torch.clamp(img.to(torch.int8) + amount, 0, 255).to(torch.uint8)\n', kind='wrong-values', description='int8 cannot hold pixels above 127: they wrap to negative numbers before the addition'),
                Variant('flat-view', 'def brighten(img, amount):\n    flat = img.view(-1).to(torch.int32) + amount\n    return flat.clamp(0, 255).to(torch.uint8).view(img.shape)\n', kind='layout', description='view(-1) fails on a transposed or sliced image'),
            ),
            alternatives=(
                Variant('reshape-flat', 'def brighten(img, amount):\n    flat = img.reshape(-1).to(torch.int32) + amount\n    return flat.clamp(0, 255).to(torch.uint8).reshape(img.shape)\n'),
                Variant("int16-byte", _brighten("    return (img.to(torch.int16) + amount).clamp(0, 255).byte()\n")),
                Variant("float-clamp-cast",
                        _brighten("    return (img.float() + amount).clamp(0, 255).to(torch.uint8)\n")),
                Variant("numpy-clip",
                        _brighten("    wide = img.numpy().astype(np.int64) + amount\n"
                                  "    return torch.from_numpy(np.asarray(np.clip(wide, 0, 255)).astype(np.uint8))\n")),
                Variant("long-min-max",
                        _brighten("    wide = img.long() + amount\n"
                                  "    wide = torch.minimum(wide, torch.tensor(255))\n"
                                  "    wide = torch.maximum(wide, torch.tensor(0))\n"
                                  "    return wide.to(torch.uint8)\n")),
            ),
        ),
        Exercise(
            solution_id="mean_as_float",
            test_ids=("test_mean_as_float",),
            mistakes=(
                Variant("int-mean", _mean_as_float("    return x.mean()\n"), kind="raises",
                        description="mean() of an integer tensor raises RuntimeError"),
                Variant("floor-division", _mean_as_float("    return x.sum() // x.numel()\n"), kind="dtype",
                        description="// keeps integers and floors the result"),
                Variant("float64", _mean_as_float("    return x.double().mean()\n"), kind="dtype",
                        description="returns float64 instead of float32"),
                Variant("len-not-numel", _mean_as_float("    return x.sum() / len(x)\n"), kind="wrong-values",
                        description="len(x) counts only the first dimension, wrong for 2-D and 3-D input"),
                Variant("python-float", _mean_as_float("    return (x.sum() / x.numel()).item()\n"), kind="dtype",
                        description="returns a Python float instead of a 0-dim tensor"),
                Variant("mean-dim0", _mean_as_float("    return x.float().mean(dim=0)\n"), kind="shape",
                        description="averages over the first dimension only, not over all elements"),
                Variant('int32-first', 'def mean_as_float(x):\n    return x.int().float().mean()\n', kind='precision', description='int32 cannot hold int64 values beyond 2**31: they wrap around'),
            ),
            alternatives=(
                Variant('mean-of-row-means', 'def mean_as_float(x):\n    return x.float().mean(dim=-1).mean()\n'),
                Variant('sum-over-numel', 'def mean_as_float(x):\n    return (x.double().sum() / x.numel()).float()\n'),
                Variant("true-division", _mean_as_float("    return x.sum() / x.numel()\n")),
                Variant("mean-dtype", _mean_as_float("    return torch.mean(x, dtype=torch.float32)\n")),
                Variant("float-method", _mean_as_float("    return x.float().mean()\n")),
                Variant("via-float64", _mean_as_float("    return x.double().mean().float()\n")),
            ),
        ),
    ),
)
