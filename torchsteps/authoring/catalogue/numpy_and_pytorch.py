"""Mistake catalogue for 01_numpy_and_pytorch.ipynb."""

from torchsteps.authoring.catalogue import Exercise, NotebookCatalogue, Variant

CATALOGUE = NotebookCatalogue(
    notebook="01_numpy_and_pytorch",
    exercises=(
        Exercise(
            solution_id="to_numpy_shared",
            test_ids=("test_to_numpy_shared",),
            mistakes=(
                Variant(
                    "copy",
                    "def to_numpy_shared(t):\n    return t.numpy().copy()\n",
                    kind="shares-memory",
                    description="copies the array, so writing into it does not change the tensor",
                ),
                Variant(
                    "clone-first",
                    "def to_numpy_shared(t):\n    return t.clone().numpy()\n",
                    kind="shares-memory",
                    description="clones the tensor 'to be safe' before converting, which breaks the link",
                ),
                Variant(
                    "via-tolist",
                    "def to_numpy_shared(t):\n    return np.array(t.tolist())\n",
                    kind="dtype",
                    description="goes through a Python list: a copy, and float32 comes back as float64",
                ),
                Variant(
                    "always-float64",
                    "def to_numpy_shared(t):\n    return t.numpy().astype(np.float64)\n",
                    kind="dtype",
                    description="forces float64 (NumPy's default), changing the dtype and copying",
                ),
                Variant('contiguous-first', 'def to_numpy_shared(t):\n    return t.contiguous().numpy()\n', kind='layout', description='makes the tensor contiguous first, which copies a transposed or sliced view'),
                Variant('atleast-1d', 'def to_numpy_shared(t):\n    return np.atleast_1d(t.numpy())\n', kind='zero-dim', description='turns a 0-dim tensor into a 1-D array'),
            ),
            alternatives=(
                Variant('numpy-method-on-detached-view', 'def to_numpy_shared(t):\n    view = t.view_as(t)\n    return view.numpy()\n'),
                Variant("np-asarray", "def to_numpy_shared(t):\n    return np.asarray(t)\n"),
                Variant("detach-numpy", "def to_numpy_shared(t):\n    return t.detach().numpy()\n"),
                Variant("force", "def to_numpy_shared(t):\n    return t.numpy(force=True)\n"),
                Variant(
                    "cpu-then-numpy",
                    "def to_numpy_shared(t):\n    t = t.cpu()\n    array = t.numpy()\n    return array\n",
                ),
            ),
        ),
        Exercise(
            solution_id="to_tensor_shared",
            test_ids=("test_to_tensor_shared",),
            mistakes=(
                Variant(
                    "torch-tensor",
                    "def to_tensor_shared(a):\n    return torch.tensor(a)\n",
                    kind="shares-memory",
                    description="torch.tensor always copies",
                ),
                Variant(
                    "legacy-Tensor",
                    "def to_tensor_shared(a):\n    return torch.Tensor(a)\n",
                    kind="legacy-constructor",
                    description="torch.Tensor turns every array into float32 (sharing only for float32 input)",
                ),
                Variant(
                    "as-tensor-float32",
                    "def to_tensor_shared(a):\n    return torch.as_tensor(a, dtype=torch.float32)\n",
                    kind="dtype",
                    description="asks for float32, so as_tensor has to copy and the dtype changes",
                ),
                Variant(
                    "from-numpy-float",
                    "def to_tensor_shared(a):\n    return torch.from_numpy(a).float()\n",
                    kind="dtype",
                    description="converts to float32 after sharing, which makes a copy for other dtypes",
                ),
                Variant(
                    "copy-first",
                    "def to_tensor_shared(a):\n    return torch.from_numpy(a.copy())\n",
                    kind="shares-memory",
                    description="copies the array before converting",
                ),
                Variant('ascontiguous', 'def to_tensor_shared(a):\n    return torch.from_numpy(np.ascontiguousarray(a))\n', kind='layout', description='np.ascontiguousarray copies a sliced or transposed view, so nothing is shared'),
            ),
            alternatives=(
                Variant("as-tensor", "def to_tensor_shared(a):\n    return torch.as_tensor(a)\n"),
                Variant("torch-asarray", "def to_tensor_shared(a):\n    return torch.asarray(a)\n"),
                Variant(
                    "as-tensor-same-dtype",
                    "def to_tensor_shared(a):\n"
                    "    dtype = torch.from_numpy(a).dtype\n"
                    "    return torch.as_tensor(a, dtype=dtype, device='cpu')\n",
                ),
            ),
        ),
        Exercise(
            solution_id="to_tensor_copy",
            test_ids=("test_to_tensor_copy",),
            mistakes=(
                Variant(
                    "from-numpy",
                    "def to_tensor_copy(a):\n    return torch.from_numpy(a)\n",
                    kind="shares-memory",
                    description="shares memory with the array instead of copying",
                ),
                Variant(
                    "as-tensor",
                    "def to_tensor_copy(a):\n    return torch.as_tensor(a)\n",
                    kind="shares-memory",
                    description="as_tensor shares when it can",
                ),
                Variant(
                    "legacy-Tensor",
                    "def to_tensor_copy(a):\n    return torch.Tensor(a)\n",
                    kind="legacy-constructor",
                    description="torch.Tensor gives float32 for every input (and shares a float32 array)",
                ),
                Variant(
                    "via-tolist",
                    "def to_tensor_copy(a):\n    return torch.tensor(a.tolist())\n",
                    kind="dtype",
                    description="a list of Python floats becomes float32, so float64 arrays lose their dtype",
                ),
                Variant(
                    "float32",
                    "def to_tensor_copy(a):\n    return torch.tensor(a, dtype=torch.float32)\n",
                    kind="dtype",
                    description="always converts to float32",
                ),
                Variant('item-for-0-dim', 'def to_tensor_copy(a):\n    if a.ndim == 0:\n        return torch.tensor(a.item())\n    return torch.tensor(a)\n', kind='zero-dim', description='a 0-dim float64 array comes back as float32 through .item()'),
                Variant('empty-special-case', 'def to_tensor_copy(a):\n    if a.size == 0:\n        return torch.tensor([])\n    return torch.tensor(a)\n', kind='empty', description='an empty array becomes a float32 tensor of shape (0,)'),
            ),
            alternatives=(
                Variant('from-numpy-of-copy', 'def to_tensor_copy(a):\n    return torch.from_numpy(np.array(a, copy=True))\n'),
                Variant("from-numpy-clone", "def to_tensor_copy(a):\n    return torch.from_numpy(a).clone()\n"),
                Variant("copy-then-share", "def to_tensor_copy(a):\n    return torch.from_numpy(a.copy())\n"),
                Variant("as-tensor-clone", "def to_tensor_copy(a):\n    return torch.as_tensor(a).clone()\n"),
                Variant("asarray-copy", "def to_tensor_copy(a):\n    return torch.asarray(a, copy=True)\n"),
                Variant(
                    "np-array-copy",
                    "def to_tensor_copy(a):\n    b = np.array(a, copy=True)\n    return torch.from_numpy(b)\n",
                ),
            ),
        ),
        Exercise(
            solution_id="add_one_shared",
            test_ids=("test_add_one_shared",),
            mistakes=(
                Variant(
                    "rebinding",
                    "def add_one_shared(a):\n    t = torch.from_numpy(a)\n    t = t + 1\n    return t\n",
                    kind="shares-memory",
                    description="t = t + 1 makes a new tensor, so the array keeps its old values",
                ),
                Variant(
                    "not-in-place-add",
                    "def add_one_shared(a):\n    t = torch.from_numpy(a)\n    t.add(1)\n    return t\n",
                    kind="wrong-values",
                    description="t.add(1) returns a new tensor that is thrown away; nothing is added",
                ),
                Variant(
                    "copy-then-add",
                    "def add_one_shared(a):\n    t = torch.tensor(a)\n    t += 1\n    return t\n",
                    kind="shares-memory",
                    description="adds in place, but to a copy, so the array does not change",
                ),
                Variant(
                    "float-one",
                    "def add_one_shared(a):\n    t = torch.from_numpy(a)\n    t += 1.0\n    return t\n",
                    kind="raises",
                    description="adding 1.0 in place to an int64 tensor raises RuntimeError",
                ),
                Variant(
                    "numpy-rebinding",
                    "def add_one_shared(a):\n    a = a + 1\n    return torch.from_numpy(a)\n",
                    kind="shares-memory",
                    description="a = a + 1 rebinds the local name; the caller's array is untouched",
                ),
                Variant('ascontiguous', 'def add_one_shared(a):\n    t = torch.from_numpy(np.ascontiguousarray(a))\n    t += 1\n    return t\n', kind='layout', description="for a sliced view, np.ascontiguousarray adds 1 to a copy: the caller's array stays unchanged"),
                Variant('float-one-unsafe', "def add_one_shared(a):\n    np.add(a, 1.0, out=a, casting='unsafe')\n    return torch.from_numpy(a)\n", kind='precision', description='adds the float 1.0: int64 values beyond 2**53 are rounded through float64'),
            ),
            alternatives=(
                Variant("add-underscore", "def add_one_shared(a):\n    return torch.from_numpy(a).add_(1)\n"),
                Variant(
                    "numpy-in-place",
                    "def add_one_shared(a):\n    a += 1\n    return torch.as_tensor(a)\n",
                ),
                Variant(
                    "np-add-out",
                    "def add_one_shared(a):\n    np.add(a, 1, out=a)\n    return torch.from_numpy(a)\n",
                ),
                Variant(
                    "torch-add-out",
                    "def add_one_shared(a):\n    t = torch.from_numpy(a)\n    torch.add(t, 1, out=t)\n    return t\n",
                ),
                Variant(
                    "torch-asarray-add-ones",
                    "def add_one_shared(a):\n    t = torch.asarray(a)\n    t.add_(torch.ones_like(t))\n    return t\n",
                ),
                Variant(
                    "index-assign",
                    "def add_one_shared(a):\n    t = torch.from_numpy(a)\n    t[...] = t + 1\n    return t\n",
                ),
            ),
        ),
        Exercise(
            solution_id="grad_to_numpy",
            test_ids=("test_grad_to_numpy",),
            mistakes=(
                Variant(
                    "plain-numpy",
                    "def grad_to_numpy(t):\n    return t.numpy()\n",
                    kind="raises",
                    description=".numpy() raises RuntimeError on a tensor that requires grad",
                ),
                Variant(
                    "switch-off-grad",
                    "def grad_to_numpy(t):\n    t.requires_grad_(False)\n    return t.numpy()\n",
                    kind="mutates-input",
                    description="turns off requires_grad on the caller's tensor (and fails for non-leaf tensors)",
                ),
                Variant(
                    "via-tolist",
                    "def grad_to_numpy(t):\n    return np.array(t.tolist())\n",
                    kind="dtype",
                    description="goes through a Python list, so float32 comes back as float64",
                ),
                Variant(
                    "always-float32",
                    "def grad_to_numpy(t):\n    return t.detach().numpy().astype(np.float32)\n",
                    kind="dtype",
                    description="assumes float32 (as in the visible example), so float64 tensors lose precision",
                ),
                Variant(
                    "swallow-error",
                    "def grad_to_numpy(t):\n"
                    "    try:\n"
                    "        return t.numpy()\n"
                    "    except RuntimeError:\n"
                    "        return None\n",
                    kind="hides-error",
                    description="catches the RuntimeError and returns None instead of fixing it",
                ),
                Variant('float32-round-trip', 'def grad_to_numpy(t):\n    values = t.detach().float().numpy()\n    return values.astype(np.float64 if t.dtype == torch.float64 else np.float32)\n', kind='precision', description='goes through float32, so float64 values lose precision'),
                Variant('detach-in-place', 'def grad_to_numpy(t):\n    return t.detach_().numpy()\n', kind='mutates-input', description="detach_() cuts the caller's tensor out of autograd"),
            ),
            alternatives=(
                Variant("force", "def grad_to_numpy(t):\n    return t.numpy(force=True)\n"),
                Variant("data", "def grad_to_numpy(t):\n    return t.data.numpy()\n"),
                Variant(
                    "detach-clone",
                    "def grad_to_numpy(t):\n    return t.detach().clone().cpu().numpy()\n",
                ),
                Variant("np-asarray", "def grad_to_numpy(t):\n    return np.asarray(t.detach())\n"),
                Variant(
                    "no-grad",
                    "def grad_to_numpy(t):\n    with torch.no_grad():\n        return t.numpy()\n",
                ),
            ),
        ),
        Exercise(
            solution_id="standardize_columns",
            test_ids=("test_standardize_columns",),
            mistakes=(
                Variant(
                    "torch-default-std",
                    "def standardize_columns(a):\n"
                    "    t = torch.from_numpy(a)\n"
                    "    return (t - t.mean(dim=0)) / t.std(dim=0)\n",
                    kind="wrong-values",
                    description="torch.std divides by n - 1 by default, unlike np.std",
                ),
                Variant(
                    "in-place-on-shared",
                    "def standardize_columns(a):\n"
                    "    t = torch.from_numpy(a)\n"
                    "    t -= t.mean(dim=0)\n"
                    "    t /= t.std(dim=0, correction=0)\n"
                    "    return t\n",
                    kind="mutates-input",
                    description="works in place on a tensor that shares memory with the input array",
                ),
                Variant(
                    "rows-not-columns",
                    "def standardize_columns(a):\n"
                    "    t = torch.from_numpy(a)\n"
                    "    mean = t.mean(dim=1, keepdim=True)\n"
                    "    std = t.std(dim=1, correction=0, keepdim=True)\n"
                    "    return (t - mean) / std\n",
                    kind="wrong-values",
                    description="standardises the rows (dim=1) instead of the columns",
                ),
                Variant(
                    "returns-ndarray",
                    "def standardize_columns(a):\n    return (a - a.mean(axis=0)) / a.std(axis=0)\n",
                    kind="wrong-values",
                    description="right numbers, but returns a NumPy array instead of a tensor",
                ),
                Variant(
                    "float32-always",
                    "def standardize_columns(a):\n"
                    "    z = (a - a.mean(axis=0)) / a.std(axis=0)\n"
                    "    return torch.tensor(z, dtype=torch.float32)\n",
                    kind="dtype",
                    description="converts the result to float32 whatever the input dtype",
                ),
                Variant(
                    "legacy-Tensor",
                    "def standardize_columns(a):\n"
                    "    t = torch.Tensor(a)\n"
                    "    return (t - t.mean(0)) / t.std(0, correction=0)\n",
                    kind="legacy-constructor",
                    description="torch.Tensor(a) turns a float64 array into float32",
                ),
                Variant(
                    "hard-coded",
                    "def standardize_columns(a):\n"
                    "    return torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=torch.float64)\n",
                    kind="hard-coded",
                    description="returns the answer to the visible example",
                ),
                Variant('float32-internally', 'def standardize_columns(a):\n    t = torch.from_numpy(a).float()\n    z = (t - t.mean(dim=0)) / t.std(dim=0, correction=0)\n    return z.to(torch.from_numpy(a).dtype)\n', kind='precision', description='computes in float32 and casts back: float64 results lose precision'),
            ),
            alternatives=(
                Variant('var-mean', 'def standardize_columns(a):\n    t = torch.from_numpy(a)\n    var, mean = torch.var_mean(t, dim=0, correction=0)\n    return (t - mean) / var.sqrt()\n'),
                Variant(
                    "numpy-then-convert",
                    "def standardize_columns(a):\n"
                    "    z = (a - a.mean(axis=0)) / a.std(axis=0)\n"
                    "    return torch.from_numpy(z)\n",
                ),
                Variant(
                    "var-sqrt-keepdim",
                    "def standardize_columns(a):\n"
                    "    t = torch.tensor(a)\n"
                    "    centred = t - t.mean(dim=0, keepdim=True)\n"
                    "    std = centred.pow(2).mean(dim=0, keepdim=True).sqrt()\n"
                    "    return centred / std\n",
                ),
                Variant(
                    "unbiased-false",
                    "def standardize_columns(a):\n"
                    "    t = torch.as_tensor(a)\n"
                    "    return (t - torch.mean(t, 0)) / torch.std(t, 0, unbiased=False)\n",
                ),
                Variant(
                    "in-place-on-clone",
                    "def standardize_columns(a):\n"
                    "    t = torch.from_numpy(a).clone()\n"
                    "    t -= t.mean(dim=0)\n"
                    "    t /= t.var(dim=0, correction=0).sqrt()\n"
                    "    return t\n",
                ),
            ),
        ),
    ),
)
