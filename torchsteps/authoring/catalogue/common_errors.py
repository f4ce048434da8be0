"""Mistake catalogue for 05_common_errors.ipynb.

Each exercise is a "fix this" exercise: the lesson shows code that raises one of the errors beginners meet,
and the student writes a function that does what the code meant to do. The required result dtypes are:

* ``apply_layer``: float32, the dtype of the layer's weights (casting the layer or its weights to float64
  gives a float64 result, and ``layer.double()`` also changes the caller's layer in place);
* ``add_row_bias``: float32, the dtype of the inputs;
* ``tensor_to_numpy``: the NumPy twin of the tensor's dtype (float32 -> float32, float64 -> float64);
* ``predict_on``: float32, on the requested device (tested on "cpu" and "meta", which every machine has);
* ``scale_counts``: float32, PyTorch's default float dtype, which ``int_tensor * python_float`` gives;
* ``all_in_range``: a Python ``bool``, not a tensor;
* ``project``: float32, the dtype of ``x`` (not float64, the dtype of the NumPy matrix).

A fix that hides the error (``try``/``except`` returning ``None`` or the input unchanged) fails, because the
hidden tests use generated inputs on which the original code raises.
"""

from torchsteps.authoring.catalogue import Exercise, NotebookCatalogue, Variant

CATALOGUE = NotebookCatalogue(
    notebook="05_common_errors",
    exercises=(
        Exercise(
            solution_id="apply_layer",
            test_ids=("test_apply_layer",),
            mistakes=(
                Variant(
                    "try-except-none",
                    "def apply_layer(layer, data):\n"
                    "    try:\n"
                    "        return layer(torch.from_numpy(data))\n"
                    "    except RuntimeError:\n"
                    "        return None\n",
                    kind="hides-error",
                    description="catches the dtype error and returns None instead of fixing it",
                ),
                Variant(
                    "torch-tensor-keeps-float64",
                    "def apply_layer(layer, data):\n    return layer(torch.tensor(data))\n",
                    kind="raises",
                    description="torch.tensor(data) keeps NumPy's float64, so the layer still raises",
                ),
                Variant(
                    "weights-to-float64",
                    "def apply_layer(layer, data):\n"
                    "    x = torch.from_numpy(data)\n"
                    "    return torch.nn.functional.linear(x, layer.weight.double(), layer.bias.double())\n",
                    kind="dtype",
                    description="casts the weights to float64: the result is float64, not float32",
                ),
                Variant(
                    "layer-double",
                    "def apply_layer(layer, data):\n"
                    "    layer = layer.double()\n"
                    "    return layer(torch.from_numpy(data))\n",
                    kind="dtype",
                    description="converts the whole layer to float64 (in place): float64 result, changed layer",
                ),
                Variant(
                    "layer-double-then-float",
                    "def apply_layer(layer, data):\n"
                    "    layer.double()\n"
                    "    out = layer(torch.from_numpy(data))\n"
                    "    return out.float()\n",
                    kind="mutates-input",
                    description="right dtype in the end, but Module.double() changed the caller's layer",
                ),
                Variant('freezes-layer', 'def apply_layer(layer, data):\n    layer.requires_grad_(False)\n    return layer(torch.from_numpy(data).float())\n', kind='mutates-input', description="switches off requires_grad on every parameter of the caller's layer (weight and bias)"),
                Variant('eval-mode', 'def apply_layer(layer, data):\n    layer.eval()\n    return layer(torch.from_numpy(data).float())\n', kind='mutates-input', description="switches the caller's layer to eval mode and leaves it there"),
            ),
            alternatives=(
                Variant('inference-mode', 'def apply_layer(layer, data):\n    with torch.inference_mode():\n        return layer(torch.from_numpy(data).to(torch.float32)).clone()\n'),
                Variant(
                    "as-tensor-dtype",
                    "def apply_layer(layer, data):\n"
                    "    return layer(torch.as_tensor(data, dtype=torch.float32))\n",
                ),
                Variant(
                    "to-weight-dtype",
                    "def apply_layer(layer, data):\n"
                    "    x = torch.from_numpy(data).to(layer.weight.dtype)\n"
                    "    return layer(x)\n",
                ),
                Variant(
                    "numpy-astype",
                    "def apply_layer(layer, data):\n"
                    "    return layer(torch.from_numpy(data.astype(np.float32)))\n",
                ),
                Variant(
                    "functional-no-grad",
                    "def apply_layer(layer, data):\n"
                    "    with torch.no_grad():\n"
                    "        x = torch.tensor(data, dtype=torch.float32)\n"
                    "        return torch.nn.functional.linear(x, layer.weight, layer.bias)\n",
                ),
            ),
        ),
        Exercise(
            solution_id="add_row_bias",
            test_ids=("test_add_row_bias",),
            mistakes=(
                Variant(
                    "try-except-input",
                    "def add_row_bias(x, bias):\n"
                    "    try:\n"
                    "        return x + bias\n"
                    "    except RuntimeError:\n"
                    "        return x\n",
                    kind="hides-error",
                    description="returns x unchanged when the shapes clash, and broadcasts wrongly when N == F",
                ),
                Variant(
                    "transpose-x",
                    "def add_row_bias(x, bias):\n    return x.T + bias\n",
                    kind="shape",
                    description="transposes x instead of the bias: the result has shape (F, N)",
                ),
                Variant(
                    "reshape-to-x",
                    "def add_row_bias(x, bias):\n    return x + bias.reshape(x.shape)\n",
                    kind="raises",
                    description="reshapes the F biases to x's shape (N, F), which fails unless N == 1",
                ),
                Variant(
                    "in-place",
                    "def add_row_bias(x, bias):\n    x += bias.T\n    return x\n",
                    kind="mutates-input",
                    description="adds the bias in place, changing the caller's x",
                ),
                Variant(
                    "hard-coded",
                    "def add_row_bias(x, bias):\n    return torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])\n",
                    kind="hard-coded",
                    description="returns the visible example's answer",
                ),
                Variant('x-when-bias-is-zero', 'def add_row_bias(x, bias):\n    if not bool(bias.any()):\n        return x\n    return x + bias.T\n', kind='identity', description='hands back x itself when the bias is all zeros, instead of a new tensor'),
            ),
            alternatives=(
                Variant("reshape-row", "def add_row_bias(x, bias):\n    return x + bias.reshape(1, -1)\n"),
                Variant("squeeze", "def add_row_bias(x, bias):\n    return x + bias.squeeze(1)\n"),
                Variant("transpose-twice", "def add_row_bias(x, bias):\n    return (x.T + bias).T\n"),
                Variant("torch-add-t", "def add_row_bias(x, bias):\n    return torch.add(x, bias.t())\n"),
            ),
        ),
        Exercise(
            solution_id="tensor_to_numpy",
            test_ids=("test_tensor_to_numpy",),
            mistakes=(
                Variant(
                    "try-except-none",
                    "def tensor_to_numpy(t):\n"
                    "    try:\n"
                    "        return t.numpy()\n"
                    "    except RuntimeError:\n"
                    "        return None\n",
                    kind="hides-error",
                    description="returns None for every tensor that requires grad",
                ),
                Variant(
                    "np-array",
                    "def tensor_to_numpy(t):\n    return np.array(t)\n",
                    kind="raises",
                    description="np.array calls t.numpy() and raises the same error",
                ),
                Variant(
                    "tolist",
                    "def tensor_to_numpy(t):\n    return np.array(t.tolist())\n",
                    kind="dtype",
                    description="goes through Python floats, so float32 tensors come back as float64 arrays",
                ),
                Variant(
                    "requires-grad-off",
                    "def tensor_to_numpy(t):\n    t.requires_grad_(False)\n    return t.numpy()\n",
                    kind="mutates-input",
                    description="switches off the caller's gradient tracking (and raises for computed tensors)",
                ),
                Variant(
                    "returns-detached-tensor",
                    "def tensor_to_numpy(t):\n    return t.detach()\n",
                    kind="wrong-values",
                    description="stops after detach(): returns a tensor, not an ndarray",
                ),
                Variant('float32-round-trip', 'def tensor_to_numpy(t):\n    values = t.detach().float().numpy()\n    return values.astype(np.float64) if t.dtype == torch.float64 else values\n', kind='precision', description='goes through float32, so float64 values lose precision'),
                Variant('detach-in-place', 'def tensor_to_numpy(t):\n    if t.requires_grad:\n        t.detach_()\n    return t.numpy()\n', kind='mutates-input', description="detach_() switches off requires_grad on the caller's tensor"),
            ),
            alternatives=(
                Variant("force", "def tensor_to_numpy(t):\n    return t.numpy(force=True)\n"),
                Variant("detach-cpu", "def tensor_to_numpy(t):\n    return t.detach().cpu().numpy()\n"),
                Variant(
                    "no-grad",
                    "def tensor_to_numpy(t):\n    with torch.no_grad():\n        return t.numpy()\n",
                ),
                Variant("detach-clone", "def tensor_to_numpy(t):\n    return t.detach().clone().numpy()\n"),
            ),
        ),
        Exercise(
            solution_id="predict_on",
            test_ids=("test_predict_on",),
            mistakes=(
                Variant(
                    "try-except-input",
                    "def predict_on(x, w, b, device):\n"
                    "    try:\n"
                    "        return x @ w + b\n"
                    "    except RuntimeError:\n"
                    "        return x\n",
                    kind="hides-error",
                    description="returns x when the devices differ, and ignores the target device",
                ),
                Variant(
                    "cuda-if-available",
                    "def predict_on(x, w, b, device):\n"
                    "    device = 'cuda' if torch.cuda.is_available() else 'cpu'\n"
                    "    return x.to(device) @ w.to(device) + b.to(device)\n",
                    kind="device",
                    description="ignores the device argument and picks one itself",
                ),
                Variant(
                    "move-x-only",
                    "def predict_on(x, w, b, device):\n    return x.to(w.device) @ w + b\n",
                    kind="device",
                    description="moves x to w's device, but neither b nor the result to the requested device",
                ),
                Variant(
                    "forget-w",
                    "def predict_on(x, w, b, device):\n    return x.to(device) @ w + b.to(device)\n",
                    kind="device",
                    description="forgets to move w (meta lets the product through, a GPU would not)",
                ),
                Variant(
                    "cuda",
                    "def predict_on(x, w, b, device):\n    return x.cuda() @ w.cuda() + b.cuda()\n",
                    kind="raises",
                    description="hard-codes .cuda(), which raises on a machine without a GPU",
                ),
            ),
            alternatives=(
                Variant(
                    "loop",
                    "def predict_on(x, w, b, device):\n"
                    "    x, w, b = (t.to(device) for t in (x, w, b))\n"
                    "    return torch.matmul(x, w) + b\n",
                ),
                Variant(
                    "addmm",
                    "def predict_on(x, w, b, device):\n"
                    "    device = torch.device(device)\n"
                    "    return torch.addmm(b.to(device), x.to(device), w.to(device))\n",
                ),
                Variant(
                    "linear",
                    "def predict_on(x, w, b, device):\n"
                    "    return torch.nn.functional.linear(x.to(device=device), w.to(device=device).T,\n"
                    "                                      b.to(device=device))\n",
                ),
            ),
        ),
        Exercise(
            solution_id="scale_counts",
            test_ids=("test_scale_counts",),
            mistakes=(
                Variant(
                    "try-except-input",
                    "def scale_counts(counts, factor):\n"
                    "    try:\n"
                    "        counts *= factor\n"
                    "    except RuntimeError:\n"
                    "        pass\n"
                    "    return counts\n",
                    kind="hides-error",
                    description="swallows the error and returns the integer counts unchanged",
                ),
                Variant(
                    "hard-coded-half",
                    "def scale_counts(counts, factor):\n    return counts.float() * 0.5\n",
                    kind="hard-coded",
                    description="copies the 0.5 of the example instead of using factor",
                ),
                Variant(
                    "double",
                    "def scale_counts(counts, factor):\n    return counts.double() * factor\n",
                    kind="dtype",
                    description="converts to float64 instead of float32",
                ),
                Variant(
                    "back-to-int",
                    "def scale_counts(counts, factor):\n    return (counts * factor).to(counts.dtype)\n",
                    kind="dtype",
                    description="casts the result back to the integer dtype, truncating the fractions",
                ),
                Variant(
                    "setitem",
                    "def scale_counts(counts, factor):\n    counts[:] = counts * factor\n    return counts.float()\n",
                    kind="mutates-input",
                    description="writes back into the counts, which silently truncates and changes the input",
                ),
                Variant('int32-first', 'def scale_counts(counts, factor):\n    return counts.to(torch.int32) * factor\n', kind='precision', description='int32 cannot hold counts beyond 2**31: they wrap around'),
            ),
            alternatives=(
                Variant('mul-float32', 'def scale_counts(counts, factor):\n    return torch.mul(counts.to(torch.float32), factor)\n'),
                Variant("float-first", "def scale_counts(counts, factor):\n    return counts.float() * factor\n"),
                Variant(
                    "to-float32-then-in-place",
                    "def scale_counts(counts, factor):\n"
                    "    result = counts.to(torch.float32)\n"
                    "    result *= factor\n"
                    "    return result\n",
                ),
                Variant("torch-mul", "def scale_counts(counts, factor):\n    return torch.mul(counts, factor)\n"),
            ),
        ),
        Exercise(
            solution_id="all_in_range",
            test_ids=("test_all_in_range",),
            mistakes=(
                Variant(
                    "try-except-false",
                    "def all_in_range(x, low, high):\n"
                    "    try:\n"
                    "        if low <= x <= high:\n"
                    "            return True\n"
                    "        return False\n"
                    "    except RuntimeError:\n"
                    "        return False\n",
                    kind="hides-error",
                    description="answers False whenever the tensor has more than one value",
                ),
                Variant(
                    "any",
                    "def all_in_range(x, low, high):\n    return bool(((x >= low) & (x <= high)).any())\n",
                    kind="wrong-values",
                    description="uses .any() where every element must be in range",
                ),
                Variant(
                    "strict",
                    "def all_in_range(x, low, high):\n    return bool(((x > low) & (x < high)).all())\n",
                    kind="wrong-values",
                    description="excludes the ends low and high",
                ),
                Variant(
                    "returns-tensor",
                    "def all_in_range(x, low, high):\n    return ((x >= low) & (x <= high)).all()\n",
                    kind="dtype",
                    description="returns a 0-dim bool tensor, not a Python bool",
                ),
                Variant(
                    "python-all-1d",
                    "def all_in_range(x, low, high):\n    return all(low <= v <= high for v in x)\n",
                    kind="shape",
                    description="loops over the first dimension only: raises for tensors with 2 or more dims",
                ),
                Variant('nan-passes', 'def all_in_range(x, low, high):\n    return not bool(((x < low) | (x > high)).any())\n', kind='wrong-values', description='a NaN is neither below low nor above high, so it passes'),
                Variant('float32-compare', 'def all_in_range(x, low, high):\n    v = x.float()\n    return bool(((v >= low) & (v <= high)).all())\n', kind='precision', description='float32 rounds 2**40 + 1 to 2**40: an int64 value just outside the range passes'),
            ),
            alternatives=(
                Variant(
                    "item-and",
                    "def all_in_range(x, low, high):\n"
                    "    return (x >= low).all().item() and (x <= high).all().item()\n",
                ),
                Variant(
                    "min-max",
                    "def all_in_range(x, low, high):\n    return bool(x.min() >= low) and bool(x.max() <= high)\n",
                ),
                Variant(
                    "logical-and",
                    "def all_in_range(x, low, high):\n"
                    "    return torch.logical_and(x >= low, x <= high).all().item()\n",
                ),
                Variant(
                    "torch-all-bool",
                    "def all_in_range(x, low, high):\n"
                    "    inside = (low <= x) & (x <= high)\n"
                    "    if torch.all(inside):\n"
                    "        return True\n"
                    "    return False\n",
                ),
            ),
        ),
        Exercise(
            solution_id="project",
            test_ids=("test_project",),
            mistakes=(
                Variant(
                    "try-except-input",
                    "def project(x, proj):\n"
                    "    try:\n"
                    "        return torch.matmul(x, proj)\n"
                    "    except TypeError:\n"
                    "        return x\n",
                    kind="hides-error",
                    description="returns x unchanged instead of converting the array",
                ),
                Variant(
                    "from-numpy-no-dtype",
                    "def project(x, proj):\n    return torch.matmul(x, torch.from_numpy(proj))\n",
                    kind="raises",
                    description="converts but keeps float64, so matmul raises a dtype error",
                ),
                Variant(
                    "operator",
                    "def project(x, proj):\n    return x @ proj\n",
                    kind="dtype",
                    description="x @ proj lets NumPy compute: the result is a float64 tensor",
                ),
                Variant(
                    "x-to-float64",
                    "def project(x, proj):\n    return torch.matmul(x.double(), torch.from_numpy(proj))\n",
                    kind="dtype",
                    description="casts x to float64 to match the array: float64 result (and int arrays raise)",
                ),
                Variant('row-by-row', 'def project(x, proj):\n    p = torch.from_numpy(proj).to(torch.float32)\n    return torch.stack([row @ p for row in x])\n', kind='empty', description='torch.stack of no rows raises: x with 0 rows fails'),
            ),
            alternatives=(
                Variant('einsum', "def project(x, proj):\n    return torch.einsum('nd,dk->nk', x, torch.as_tensor(proj, dtype=torch.float32))\n"),
                Variant(
                    "as-tensor-dtype",
                    "def project(x, proj):\n    return x @ torch.as_tensor(proj, dtype=x.dtype)\n",
                ),
                Variant(
                    "tensor-float32",
                    "def project(x, proj):\n"
                    "    p = torch.tensor(proj, dtype=torch.float32)\n"
                    "    return torch.matmul(x, p)\n",
                ),
                Variant(
                    "numpy-then-float",
                    "def project(x, proj):\n    return torch.from_numpy(x.numpy() @ proj).float()\n",
                ),
            ),
        ),
    ),
)
