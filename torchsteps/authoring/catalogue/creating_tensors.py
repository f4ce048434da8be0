"""Mistake catalogue for 02_creating_tensors.ipynb."""

from torchsteps.authoring.catalogue import Exercise, NotebookCatalogue, Variant

CATALOGUE = NotebookCatalogue(
    notebook="02_creating_tensors",
    exercises=(
        Exercise(
            solution_id="scalar_tensor",
            test_ids=("test_scalar_tensor",),
            mistakes=(
                Variant(
                    "legacy-Tensor",
                    "def scalar_tensor(x):\n    return torch.Tensor(x)\n",
                    kind="legacy-constructor",
                    description="torch.Tensor(3) is an unset float32 tensor of shape (3,), and a float raises",
                ),
                Variant(
                    "one-element-list",
                    "def scalar_tensor(x):\n    return torch.tensor([x])\n",
                    kind="shape",
                    description="wraps x in a list, giving shape (1,) instead of a 0-dim tensor",
                ),
                Variant(
                    "torch-scalar_tensor",
                    "def scalar_tensor(x):\n    return torch.scalar_tensor(x)\n",
                    kind="dtype",
                    description="torch.scalar_tensor always uses the default float dtype, so ints and bools become float32",
                ),
                Variant(
                    "bool-is-int",
                    "def scalar_tensor(x):\n"
                    "    if isinstance(x, int):\n"
                    "        return torch.tensor(x, dtype=torch.int64)\n"
                    "    return torch.tensor(x, dtype=torch.float32)\n",
                    kind="dtype",
                    description="bool is a subclass of int, so True and False come out as int64",
                ),
                Variant(
                    "float-everything",
                    "def scalar_tensor(x):\n    return torch.tensor(float(x))\n",
                    kind="dtype",
                    description="converts every number to float first, so ints and bools become float32",
                ),
                Variant('through-float64', 'def scalar_tensor(x):\n    dtype = {bool: torch.bool, int: torch.int64, float: torch.float32}[type(x)]\n    return torch.tensor(x, dtype=torch.float64).to(dtype)\n', kind='precision', description='goes through float64, so ints beyond 2**53 are rounded'),
            ),
            alternatives=(
                Variant('dtype-table', 'def scalar_tensor(x):\n    dtype = {bool: torch.bool, int: torch.int64, float: torch.float32}[type(x)]\n    return torch.tensor(x, dtype=dtype)\n'),
                Variant("as_tensor", "def scalar_tensor(x):\n    return torch.as_tensor(x)\n"),
                Variant("full-empty-shape", "def scalar_tensor(x):\n    return torch.full((), x)\n"),
                Variant("squeeze-list", "def scalar_tensor(x):\n    return torch.tensor([x]).squeeze()\n"),
                Variant(
                    "explicit-dtypes",
                    "def scalar_tensor(x):\n"
                    "    if isinstance(x, bool):\n"
                    "        dtype = torch.bool\n"
                    "    elif isinstance(x, int):\n"
                    "        dtype = torch.int64\n"
                    "    else:\n"
                    "        dtype = torch.float32\n"
                    "    return torch.tensor(x, dtype=dtype)\n",
                ),
            ),
        ),
        Exercise(
            solution_id="ramp",
            test_ids=("test_ramp",),
            mistakes=(
                Variant(
                    "arange-end-excluded",
                    "def ramp(start, stop, count):\n"
                    "    return torch.arange(start, stop, (stop - start) / count)\n",
                    kind="wrong-values",
                    description="arange leaves out the end, so the ramp stops short of stop",
                ),
                Variant(
                    "arange-float-step",
                    "def ramp(start, stop, count):\n"
                    "    step = (stop - start) / (count - 1)\n"
                    "    return torch.arange(start, stop + step, step)\n",
                    kind="shape",
                    description="arange with a float step can give an extra element through rounding "
                    "(and fails when start == stop)",
                ),
                Variant(
                    "starts-at-zero",
                    "def ramp(start, stop, count):\n"
                    "    return torch.arange(count) * (stop / (count - 1))\n",
                    kind="hard-coded",
                    description="assumes the ramp starts at 0, as in both visible examples",
                ),
                Variant(
                    "numpy-float64",
                    "def ramp(start, stop, count):\n"
                    "    return torch.tensor(np.linspace(start, stop, count))\n",
                    kind="dtype",
                    description="np.linspace gives float64, and torch.tensor keeps it",
                ),
                Variant(
                    "linspace-no-steps",
                    "def ramp(start, stop, count):\n    return torch.linspace(start, stop)\n",
                    kind="raises",
                    description="torch.linspace needs the number of steps; without it the call raises TypeError",
                ),
                Variant(
                    "count-means-gaps",
                    "def ramp(start, stop, count):\n    return torch.linspace(start, stop, count + 1)\n",
                    kind="shape",
                    description="treats count as the number of gaps, giving one point too many",
                ),
            ),
            alternatives=(
                Variant('linspace-float64-then-float32', 'def ramp(start, stop, count):\n    return torch.linspace(start, stop, count, dtype=torch.float64).to(torch.float32)\n'),
                Variant(
                    "linspace-keywords",
                    "def ramp(start, stop, count):\n"
                    "    return torch.linspace(start, stop, steps=count, dtype=torch.float32)\n",
                ),
                Variant(
                    "arange-times-step",
                    "def ramp(start, stop, count):\n"
                    "    step = (stop - start) / (count - 1)\n"
                    "    return start + torch.arange(count) * step\n",
                ),
                Variant(
                    "numpy-then-float",
                    "def ramp(start, stop, count):\n"
                    "    return torch.from_numpy(np.linspace(start, stop, count)).float()\n",
                ),
            ),
        ),
        Exercise(
            solution_id="filled_like",
            test_ids=("test_filled_like",),
            mistakes=(
                Variant(
                    "ones-like-times-value",
                    "def filled_like(t, value):\n    return torch.ones_like(t) * value\n",
                    kind="dtype",
                    description="multiplying by a float value promotes an integer tensor to float32",
                ),
                Variant(
                    "ones-times-value",
                    "def filled_like(t, value):\n    return torch.ones(t.shape) * value\n",
                    kind="dtype",
                    description="torch.ones is float32 whatever the dtype of t",
                ),
                Variant(
                    "full-dtype-from-value",
                    "def filled_like(t, value):\n    return torch.full(t.shape, value)\n",
                    kind="dtype",
                    description="torch.full takes its dtype from value (int64 or float32), not from t",
                ),
                Variant(
                    "fill-in-place",
                    "def filled_like(t, value):\n    return t.fill_(value)\n",
                    kind="mutates-input",
                    description="fill_ overwrites t itself and returns it",
                ),
                Variant('full-on-cpu', 'def filled_like(t, value):\n    return torch.full(t.shape, value, dtype=t.dtype)\n', kind='device', description='torch.full without device= makes the tensor on the CPU, whatever device t is on'),
                Variant('input-when-already-filled', 'def filled_like(t, value):\n    if bool((t == value).all()):\n        return t\n    return torch.full_like(t, value)\n', kind='identity', description='returns t itself when it already holds the value (and for an empty t)'),
                Variant('full-through-float32', 'def filled_like(t, value):\n    return torch.full_like(t, value, dtype=torch.float32).to(t.dtype)\n', kind='precision', description='fills in float32 first: int64 and float64 values that float32 cannot hold are rounded'),
            ),
            alternatives=(
                Variant("new_full", "def filled_like(t, value):\n    return t.new_full(t.shape, value)\n"),
                Variant(
                    "full-with-dtype",
                    "def filled_like(t, value):\n"
                    "    return torch.full(t.size(), value, dtype=t.dtype, device=t.device)\n",
                ),
                Variant("empty-like-fill", "def filled_like(t, value):\n    return torch.empty_like(t).fill_(value)\n"),
                Variant("clone-fill", "def filled_like(t, value):\n    return t.clone().fill_(value)\n"),
            ),
        ),
        Exercise(
            solution_id="seeded_noise",
            test_ids=("test_seeded_noise",),
            mistakes=(
                Variant(
                    "global-manual-seed",
                    "def seeded_noise(seed, shape):\n"
                    "    torch.manual_seed(seed)\n"
                    "    return torch.randn(shape)\n",
                    kind="mutates-input",
                    description="reseeds the global generator, changing the random numbers of all later code",
                ),
                Variant(
                    "generator-is-global",
                    "def seeded_noise(seed, shape):\n"
                    "    return torch.randn(shape, generator=torch.manual_seed(seed))\n",
                    kind="mutates-input",
                    description="torch.manual_seed returns the global generator, so the global state still changes",
                ),
                Variant(
                    "unseeded-generator",
                    "def seeded_noise(seed, shape):\n"
                    "    g = torch.Generator()\n"
                    "    return torch.randn(shape, generator=g)\n",
                    kind="wrong-values",
                    description="never seeds the generator, so every seed gives the same default-seed numbers",
                ),
                Variant(
                    "uniform",
                    "def seeded_noise(seed, shape):\n"
                    "    g = torch.Generator().manual_seed(seed)\n"
                    "    return torch.rand(shape, generator=g)\n",
                    kind="wrong-values",
                    description="torch.rand draws uniform values in [0, 1), not standard-normal ones",
                ),
                Variant(
                    "numpy-rng",
                    "def seeded_noise(seed, shape):\n"
                    "    rng = np.random.default_rng(seed)\n"
                    "    return torch.from_numpy(rng.standard_normal(shape))\n",
                    kind="dtype",
                    description="NumPy's generator gives float64 values (and different numbers)",
                ),
                Variant('float64-draws', 'def seeded_noise(seed, shape):\n    g = torch.Generator().manual_seed(seed)\n    return torch.randn(shape, generator=g, dtype=torch.float64).float()\n', kind='precision', description='draws float64 values and rounds them: not the float32 values torch.randn draws'),
            ),
            alternatives=(
                Variant('explicit-dtype', 'def seeded_noise(seed, shape):\n    g = torch.Generator()\n    g.manual_seed(seed)\n    return torch.randn(*shape, generator=g, dtype=torch.float32)\n'),
                Variant(
                    "normal",
                    "def seeded_noise(seed, shape):\n"
                    "    g = torch.Generator()\n"
                    "    g.manual_seed(seed)\n"
                    "    return torch.normal(0.0, 1.0, size=shape, generator=g)\n",
                ),
                Variant(
                    "empty-normal_",
                    "def seeded_noise(seed, shape):\n"
                    "    g = torch.Generator().manual_seed(seed)\n"
                    "    return torch.empty(shape).normal_(generator=g)\n",
                ),
                Variant(
                    "fork_rng",
                    "def seeded_noise(seed, shape):\n"
                    "    with torch.random.fork_rng(devices=[]):\n"
                    "        torch.manual_seed(seed)\n"
                    "        return torch.randn(shape)\n",
                ),
                Variant(
                    "unpacked-shape",
                    "def seeded_noise(seed, shape):\n"
                    "    g = torch.Generator().manual_seed(seed)\n"
                    "    return torch.randn(*shape, generator=g, dtype=torch.float32)\n",
                ),
            ),
        ),
        Exercise(
            solution_id="shape_info",
            test_ids=("test_shape_info",),
            mistakes=(
                Variant(
                    "len-for-ndim",
                    "def shape_info(t):\n    return (t.shape, len(t), t.numel())\n",
                    kind="raises",
                    description="len(t) is the size of the first dimension, and raises TypeError for a 0-dim tensor",
                ),
                Variant(
                    "plain-tuple",
                    "def shape_info(t):\n    return (tuple(t.shape), t.ndim, t.numel())\n",
                    kind="dtype",
                    description="converts the torch.Size to a plain tuple",
                ),
                Variant(
                    "numel-not-called",
                    "def shape_info(t):\n    return (t.shape, t.ndim, t.numel)\n",
                    kind="dtype",
                    description="returns the numel method itself instead of calling it",
                ),
                Variant(
                    "two-dims-only",
                    "def shape_info(t):\n    return (t.shape, 2, t.shape[0] * t.shape[1])\n",
                    kind="hard-coded",
                    description="assumes a matrix, as in the visible example",
                ),
                Variant('storage-size', 'def shape_info(t):\n    return (t.shape, t.dim(), t.untyped_storage().nbytes() // t.element_size())\n', kind='layout', description='counts the memory underneath: wrong for sliced and expanded views'),
            ),
            alternatives=(
                Variant('prod-of-sizes', 'def shape_info(t):\n    count = 1\n    for size in t.shape:\n        count *= size\n    return (t.size(), len(t.shape), count)\n'),
                Variant("size-dim-nelement", "def shape_info(t):\n    return (t.size(), t.dim(), t.nelement())\n"),
                Variant(
                    "len-of-shape-prod",
                    "import math\n\n\ndef shape_info(t):\n"
                    "    shape = t.shape\n"
                    "    return (shape, len(shape), math.prod(shape))\n",
                ),
                Variant("size-numel", "def shape_info(t):\n    s = t.size()\n    return s, len(s), s.numel()\n"),
            ),
        ),
    ),
)
