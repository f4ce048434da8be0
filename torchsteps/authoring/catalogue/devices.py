"""Mistake catalogue for 04_devices.ipynb."""
from torchsteps.authoring.catalogue import Exercise, NotebookCatalogue, Variant

CATALOGUE = NotebookCatalogue(
    notebook="04_devices",
    exercises=(
        Exercise(
            solution_id="pick_device",
            test_ids=("test_pick_device",),
            mistakes=(
                Variant(
                    "returns-string",
                    "def pick_device():\n"
                    "    if torch.cuda.is_available():\n"
                    "        return \"cuda\"\n"
                    "    if torch.backends.mps.is_available():\n"
                    "        return \"mps\"\n"
                    "    return \"cpu\"\n",
                    kind="device",
                    description="returns the device's name as a string, not a torch.device",
                ),
                Variant(
                    "returns-bool",
                    "def pick_device():\n"
                    "    return torch.cuda.is_available()\n",
                    kind="wrong-values",
                    description="returns whether a GPU exists instead of a device",
                ),
                Variant(
                    "no-parentheses",
                    "def pick_device():\n"
                    "    if torch.cuda.is_available:\n"
                    "        return torch.device(\"cuda\")\n"
                    "    if torch.backends.mps.is_available:\n"
                    "        return torch.device(\"mps\")\n"
                    "    return torch.device(\"cpu\")\n",
                    kind="device",
                    description="tests the function object (always true) instead of calling is_available(); "
                    "caught on every grader: the tests simulate a machine without an NVIDIA GPU",
                ),
                Variant(
                    "hard-coded-cuda",
                    "def pick_device():\n"
                    "    return torch.device(\"cuda\")\n",
                    kind="hard-coded",
                    description="always answers cuda, with no CPU fallback "
                    "(caught on every grader: the tests simulate a machine without an NVIDIA GPU)",
                ),
                Variant('cuda-branch-not-assigned', 'def pick_device():\n    device = torch.device("cpu")\n    if torch.cuda.is_available():\n        torch.device("cuda")\n    elif torch.backends.mps.is_available():\n        device = torch.device("mps")\n    return device\n', kind='availability', description='the CUDA branch builds a device but never assigns it: CPU-only graders cannot tell'),
                Variant('never-checks-cuda', 'def pick_device():\n    if torch.backends.mps.is_available():\n        return torch.device("mps")\n    return torch.device("cpu")\n', kind='availability', description='forgets CUDA altogether: right on a machine without an NVIDIA GPU'),
                Variant('mps-first', 'def pick_device():\n    if torch.backends.mps.is_available():\n        return torch.device("mps")\n    if torch.cuda.is_available():\n        return torch.device("cuda")\n    return torch.device("cpu")\n', kind='availability', description='prefers MPS over CUDA on a machine that has both'),
            ),
            alternatives=(
                Variant('device-string-chain', 'def pick_device():\n    name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"\n    return torch.device(name)\n'),
                Variant(
                    "conditional-expression",
                    "def pick_device():\n"
                    "    name = \"cuda\" if torch.cuda.is_available() else "
                    "(\"mps\" if torch.backends.mps.is_available() else \"cpu\")\n"
                    "    return torch.device(name)\n",
                ),
                Variant(
                    "getattr-guard",
                    "def pick_device():\n"
                    "    device = torch.device(\"cpu\")\n"
                    "    mps = getattr(torch.backends, \"mps\", None)\n"
                    "    if mps is not None and mps.is_available():\n"
                    "        device = torch.device(\"mps\")\n"
                    "    if torch.cuda.is_available():\n"
                    "        device = torch.device(\"cuda\")\n"
                    "    return device\n",
                ),
            ),
        ),
        Exercise(
            solution_id="make_on",
            test_ids=("test_make_on",),
            mistakes=(
                Variant(
                    "hard-coded-cpu",
                    "def make_on(values, device):\n"
                    "    return torch.tensor(values, dtype=torch.float32, device=\"cpu\")\n",
                    kind="hard-coded",
                    description="ignores the device argument and always builds on the CPU, "
                    "the device of the visible examples",
                ),
                Variant(
                    "hard-coded-cuda",
                    "def make_on(values, device):\n"
                    "    return torch.tensor(values, dtype=torch.float32, device=\"cuda\")\n",
                    kind="raises",
                    description="writes \"cuda\" into the function; raises without an NVIDIA GPU "
                    "and lands on the wrong device with one",
                ),
                Variant(
                    "no-dtype",
                    "def make_on(values, device):\n"
                    "    return torch.tensor(values, device=device)\n",
                    kind="dtype",
                    description="a list of ints becomes an int64 tensor, not float32",
                ),
                Variant(
                    "legacy-constructor",
                    "def make_on(values, device):\n"
                    "    return torch.Tensor(values, device=device)\n",
                    kind="legacy-constructor",
                    description="torch.Tensor(...) only accepts the CPU as device; raises for any other",
                ),
                Variant(
                    "forgot-reassign",
                    "def make_on(values, device):\n"
                    "    t = torch.tensor(values, dtype=torch.float32)\n"
                    "    t.to(device)\n"
                    "    return t\n",
                    kind="device",
                    description="discards the result of .to(device), so the tensor stays on the CPU",
                ),
                Variant(
                    "via-numpy-float64",
                    "def make_on(values, device):\n"
                    "    return torch.tensor(np.array(values, dtype=float), device=device)\n",
                    kind="dtype",
                    description="goes through a float64 NumPy array, so the tensor is float64",
                ),
                Variant('cuda-when-available', 'def make_on(values, device):\n    if torch.cuda.is_available():\n        device = torch.device("cuda")\n    return torch.tensor(values, dtype=torch.float32, device=device)\n', kind='availability', description='overrides the device it was given whenever a GPU is present'),
            ),
            alternatives=(
                Variant(
                    "as-tensor",
                    "def make_on(values, device):\n"
                    "    return torch.as_tensor(values, dtype=torch.float32, device=device)\n",
                ),
                Variant(
                    "create-then-move",
                    "def make_on(values, device):\n"
                    "    t = torch.tensor(values, dtype=torch.float)\n"
                    "    t = t.to(device)\n"
                    "    return t\n",
                ),
                Variant(
                    "floats-first",
                    "def make_on(values, device):\n"
                    "    return torch.tensor([float(v) for v in values], device=device)\n",
                ),
                Variant(
                    "legacy-then-move",
                    "def make_on(values, device):\n"
                    "    return torch.Tensor(values).to(device)\n",
                ),
            ),
        ),
        Exercise(
            solution_id="move_all",
            test_ids=("test_move_all",),
            mistakes=(
                Variant(
                    "forgot-reassign",
                    "def move_all(tensors, device):\n"
                    "    for t in tensors:\n"
                    "        t.to(device)\n"
                    "    return tensors\n",
                    kind="device",
                    description="discards the results of .to(device); nothing moves",
                ),
                Variant(
                    "rebinds-loop-variable",
                    "def move_all(tensors, device):\n"
                    "    for t in tensors:\n"
                    "        t = t.to(device)\n"
                    "    return tensors\n",
                    kind="device",
                    description="assigns to the loop variable only, so the list keeps the old tensors",
                ),
                Variant(
                    "mutates-list",
                    "def move_all(tensors, device):\n"
                    "    for i in range(len(tensors)):\n"
                    "        tensors[i] = tensors[i].to(device)\n"
                    "    return tensors\n",
                    kind="mutates-input",
                    description="replaces the items of the caller's list instead of building a new one",
                ),
                Variant(
                    "hard-coded-cuda",
                    "def move_all(tensors, device):\n"
                    "    return [t.cuda() for t in tensors]\n",
                    kind="raises",
                    description="uses .cuda() instead of the device argument; raises without an NVIDIA GPU",
                ),
                Variant(
                    "float-for-gpu",
                    "def move_all(tensors, device):\n"
                    "    return [t.to(device, torch.float32) for t in tensors]\n",
                    kind="dtype",
                    description="also converts every tensor to float32",
                ),
                Variant(
                    "stack",
                    "def move_all(tensors, device):\n"
                    "    return list(torch.stack(tensors).to(device))\n",
                    kind="shape",
                    description="stacks the tensors into one, which fails for different shapes or an empty list",
                ),
                Variant('same-list-when-nothing-to-move', 'def move_all(tensors, device):\n    if all(t.device == device for t in tensors):\n        return tensors\n    return [t.to(device) for t in tensors]\n', kind='identity', description="hands back the caller's list when nothing had to move (and for an empty list)"),
                Variant('via-tolist', 'def move_all(tensors, device):\n    return [torch.tensor(t.tolist(), device=device) for t in tensors]\n', kind='dtype', description='rebuilding from Python values loses int32, float16 and float64 dtypes'),
            ),
            alternatives=(
                Variant('list-comprehension-copy-for-empty', 'def move_all(tensors, device):\n    moved = list(tensors)\n    for i, t in enumerate(moved):\n        moved[i] = t.to(device=device)\n    return moved\n'),
                Variant(
                    "append-loop",
                    "def move_all(tensors, device):\n"
                    "    moved = []\n"
                    "    for t in tensors:\n"
                    "        moved.append(t.to(device=device))\n"
                    "    return moved\n",
                ),
                Variant(
                    "map",
                    "def move_all(tensors, device):\n"
                    "    return list(map(lambda t: t.to(device), tensors))\n",
                ),
                Variant(
                    "copy-then-replace",
                    "def move_all(tensors, device):\n"
                    "    result = list(tensors)\n"
                    "    for i, t in enumerate(result):\n"
                    "        result[i] = t.to(device, copy=True)\n"
                    "    return result\n",
                ),
            ),
        ),
        Exercise(
            solution_id="add_on_device",
            test_ids=("test_add_on_device",),
            mistakes=(
                Variant(
                    "forgot-reassign",
                    "def add_on_device(a, b, device):\n"
                    "    a.to(device)\n"
                    "    b.to(device)\n"
                    "    return a + b\n",
                    kind="device",
                    description="discards the moved tensors, so the sum is computed where a and b already were",
                ),
                Variant(
                    "move-result",
                    "def add_on_device(a, b, device):\n"
                    "    return (a + b).to(device)\n",
                    kind="device",
                    description="adds first and moves afterwards; raises when a and b are on different devices",
                ),
                Variant(
                    "only-a",
                    "def add_on_device(a, b, device):\n"
                    "    a = a.to(device)\n"
                    "    return a + b\n",
                    kind="device",
                    description="moves a but not b",
                ),
                Variant(
                    "hard-coded-cuda",
                    "def add_on_device(a, b, device):\n"
                    "    return a.cuda() + b.cuda()\n",
                    kind="raises",
                    description="uses .cuda() instead of the device argument; raises without an NVIDIA GPU",
                ),
                Variant(
                    "in-place",
                    "def add_on_device(a, b, device):\n"
                    "    a = a.to(device)\n"
                    "    a += b.to(device)\n"
                    "    return a\n",
                    kind="mutates-input",
                    description="adds in place; when a is already on device, .to returns a itself, "
                    "so the caller's a changes",
                ),
                Variant('through-float32', 'def add_on_device(a, b, device):\n    total = a.to(device, torch.float32) + b.to(device, torch.float32)\n    return total.to(a.dtype)\n', kind='precision', description='adds in float32: int64 and float64 values lose precision'),
            ),
            alternatives=(
                Variant(
                    "torch-add",
                    "def add_on_device(a, b, device):\n"
                    "    return torch.add(a.to(device), b.to(device))\n",
                ),
                Variant(
                    "reassign-then-add",
                    "def add_on_device(a, b, device):\n"
                    "    a = a.to(device)\n"
                    "    b = b.to(device)\n"
                    "    return a.add(b)\n",
                ),
                Variant(
                    "out-of-place-copy",
                    "def add_on_device(a, b, device):\n"
                    "    result = a.to(device).clone()\n"
                    "    return result + b.to(device=device)\n",
                ),
            ),
        ),
        Exercise(
            solution_id="to_numpy_any_device",
            test_ids=("test_to_numpy_any_device",),
            mistakes=(
                Variant(
                    "numpy-only",
                    "def to_numpy_any_device(t):\n"
                    "    return t.numpy()\n",
                    kind="raises",
                    description="neither detaches nor moves to the CPU; raises for requires_grad=True",
                ),
                Variant(
                    "no-detach",
                    "def to_numpy_any_device(t):\n"
                    "    return t.cpu().numpy()\n",
                    kind="raises",
                    description="forgets .detach(); raises for requires_grad=True",
                ),
                Variant(
                    "no-cpu",
                    "def to_numpy_any_device(t):\n"
                    "    return t.detach().numpy()\n",
                    kind="device",
                    description="forgets .cpu(); works for CPU tensors only",
                ),
                Variant(
                    "cuda-only-check",
                    "def to_numpy_any_device(t):\n"
                    "    if t.is_cuda:\n"
                    "        t = t.cpu()\n"
                    "    return t.detach().numpy()\n",
                    kind="device",
                    description="moves only CUDA tensors to the CPU, forgetting every other device",
                ),
                Variant(
                    "via-tolist",
                    "def to_numpy_any_device(t):\n"
                    "    return np.array(t.tolist())\n",
                    kind="dtype",
                    description="goes through Python numbers, so float32 becomes float64",
                ),
                Variant(
                    "returns-tensor",
                    "def to_numpy_any_device(t):\n"
                    "    return t.detach().cpu()\n",
                    kind="wrong-values",
                    description="stops at the CPU tensor and never converts it to NumPy",
                ),
                Variant('detach-in-place', 'def to_numpy_any_device(t):\n    if t.requires_grad:\n        t.detach_()\n    return t.cpu().numpy()\n', kind='mutates-input', description="detach_() switches off requires_grad on the caller's tensor"),
                Variant('through-float64', "def to_numpy_any_device(t):\n    values = t.detach().cpu().double().numpy()\n    return values.astype(str(t.dtype).replace('torch.', ''))\n", kind='precision', description='goes through float64: int64 values beyond 2**53 are rounded'),
            ),
            alternatives=(
                Variant(
                    "cpu-then-detach",
                    "def to_numpy_any_device(t):\n"
                    "    return t.cpu().detach().numpy()\n",
                ),
                Variant(
                    "force",
                    "def to_numpy_any_device(t):\n"
                    "    return t.numpy(force=True)\n",
                ),
                Variant(
                    "np-asarray",
                    "def to_numpy_any_device(t):\n"
                    "    return np.asarray(t.detach().to(\"cpu\"))\n",
                ),
                Variant(
                    "device-check",
                    "def to_numpy_any_device(t):\n"
                    "    t = t.detach()\n"
                    "    if t.device.type != \"cpu\":\n"
                    "        t = t.cpu()\n"
                    "    return t.numpy().copy()\n",
                ),
            ),
        ),
    ),
)
