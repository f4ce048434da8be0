"""What crosses between the student kernel and the grader process: data only, in a format whose loader runs no code.

Used on both sides of the boundary (the grader process imports this file; the harness in the student
kernel executes its source), so it imports nothing of torchsteps. An object becomes a tree of tagged dicts
(JSON) plus raw byte blobs, the layout of safetensors: a message is ``b"TSX1"``, the header's length
(8 bytes, little endian), the header (JSON: the tree and where each blob lies) and the blobs. Tensors
travel as the bytes of their storage with dtype, shape, strides and offset (so views keep their layout
and tensors sharing a storage still share it), rebuilt with ``torch.frombuffer`` and ``Tensor.set_``;
NumPy arrays as the bytes of the buffer they view, rebuilt with ``numpy.frombuffer`` and strides.
Reading runs no code: ``json.loads`` and byte copies only; dtype names are checked against torch's and
NumPy's plain dtypes (never ``object``), every layout is checked to stay inside its bytes. Nothing is
ever unpickled. (``torch.save``/``torch.load(weights_only=True)`` would be as safe but costs about
10 ms per message, a few seconds per notebook.)

Supported: None, bool, int, float, complex, str, bytes; list, tuple, dict, set, frozenset, slice,
range, Ellipsis; ``torch.Tensor`` (any dtype; cpu, meta and other devices; ``requires_grad``; leaf or
not; ``nn.Parameter``), ``numpy.ndarray`` (plain dtypes, any strides, views keep their layout),
NumPy scalars and dtypes, ``torch.dtype``, ``torch.device``, ``torch.Size``, ``torch.Generator`` (its
state), the ``torch.nn`` modules in :data:`MODULES` (class name and parameters), exceptions (the names
of their classes and the message). Anything else becomes an :class:`Opaque` stand-in carrying the type's
name, so a check on it fails with a clear message instead of passing.

Slots: the encoder numbers every mutable object it writes (tensors, arrays, lists, dicts, modules,
generators) and the decoder keeps them in the same order, so that a later message can say "the same
object as argument slot 3" (``ref``) or "a view into the memory of slot 3" (``view``).
"""

import json
import math
import random
import struct

import numpy as np
import torch

__all__ = ["dumps", "loads", "Encoder", "Decoder", "Opaque", "CrossingError", "MODULES", "EXCEPTIONS",
           "global_state", "changed_state", "Reading"]

# Exceptions a student function may raise that the grader re-raises with their own type; any other
# exception becomes the first of these found in its class's MRO (a custom ValueError subclass -> ValueError).
EXCEPTIONS = {
    cls.__name__: cls
    for cls in (
        ArithmeticError, AssertionError, AttributeError, BufferError, EOFError, FloatingPointError, ImportError,
        IndexError, KeyError, LookupError, MemoryError, ModuleNotFoundError, NameError, NotImplementedError,
        OSError, OverflowError, RecursionError, RuntimeError, StopIteration, TimeoutError, TypeError,
        UnboundLocalError, UnicodeError, ValueError, ZeroDivisionError, Exception,
    )
}
NUMPY_KINDS = set("biufcmM")
MAX_DEPTH = 64


class CrossingError(ValueError):
    """A message that cannot be encoded or decoded (unsupported or malformed data)."""


class Opaque:
    """Stand-in for a student object that cannot cross: it has the type's name and nothing else."""

    def __init__(self, type_name="object", module="", text=""):
        self._text = text or f"<{type_name} object from the student's notebook>"

    def __repr__(self):
        return self._text


def _opaque_class(module, qualname):
    # A class named like the student's, so checks say "expected a torch.Tensor, got mymodule.FakeTensor".
    name = qualname.rsplit(".", 1)[-1] if qualname.replace(".", "").replace("_", "").isalnum() else "object"
    cls = type(name, (Opaque,), {"__qualname__": qualname, "__module__": module or "student"})
    return cls


def _nn_modules():
    nn = torch.nn
    simple = {name: getattr(nn, name) for name in (
        "ReLU", "Sigmoid", "Tanh", "Identity", "Flatten", "Softmax", "LogSoftmax", "GELU", "LeakyReLU", "Dropout",
    )}
    return {"Linear": nn.Linear, "Sequential": nn.Sequential, **simple}


MODULES = _nn_modules()


def _module_kwargs(module):
    """Constructor arguments that are not parameters (kept so that a rebuilt module behaves the same)."""
    if isinstance(module, torch.nn.Linear):
        return {"in_features": module.in_features, "out_features": module.out_features, "bias": module.bias is not None}
    keep = {}
    for key in ("dim", "p", "inplace", "negative_slope", "start_dim", "end_dim", "approximate"):
        if key in vars(module):
            keep[key] = vars(module)[key]
    return keep


class Encoder:
    """Turns objects into a tree that :func:`dumps` writes; remembers the slot of each mutable object."""

    def __init__(self, refs=None, regions=None):
        self.slots = []  # objects in slot order
        self._slot_of = {}  # id(obj) -> slot
        self.refs = refs or {}  # id(obj) -> slot of the OTHER side's numbering (identity with an argument)
        self.regions = regions  # callable(obj) -> view node or None (memory shared with an argument)
        self.blobs = []  # bytes-like objects, in order
        self._blob_of = {}

    def _slot(self, obj):
        self._slot_of[id(obj)] = len(self.slots)
        self.slots.append(obj)

    def encode(self, obj, depth=0):
        if depth > MAX_DEPTH:
            raise CrossingError("data nested too deeply")
        if id(obj) in self.refs:
            return {"t": "ref", "slot": self.refs[id(obj)]}
        if self.regions is not None and isinstance(obj, (torch.Tensor, np.ndarray)):
            view = self.regions(obj)
            if view is not None:
                view["value"] = self._encode_plain(obj, depth)
                return view
        return self._encode_plain(obj, depth)

    def _encode_plain(self, obj, depth):
        t = type(obj)
        if obj is None:
            return {"t": "none"}
        if obj is Ellipsis:
            return {"t": "ellipsis"}
        if t in (bool, int, float, str):
            return {"t": t.__name__, "v": obj}
        if t is bytes:
            return {"t": "bytes", "blob": self._blob(("bytes", len(self.blobs)), obj)}
        if t is complex:
            return {"t": "complex", "v": [obj.real, obj.imag]}
        if t in (list, tuple, set, frozenset):
            self._slot(obj)
            items = sorted(obj, key=repr) if t in (set, frozenset) else obj
            return {"t": t.__name__, "v": [self.encode(x, depth + 1) for x in items]}
        if t is dict:
            self._slot(obj)
            return {"t": "dict", "k": [self.encode(k, depth + 1) for k in obj], "v": [self.encode(v, depth + 1) for v in obj.values()]}
        if t is slice:
            return {"t": "slice", "v": [self.encode(x, depth + 1) for x in (obj.start, obj.stop, obj.step)]}
        if t is range:
            return {"t": "range", "v": [obj.start, obj.stop, obj.step]}
        if t is torch.Size:
            return {"t": "size", "v": [int(x) for x in obj]}
        if t is torch.dtype:
            return {"t": "dtype", "v": str(obj).replace("torch.", "")}
        if t is torch.device:
            return {"t": "device", "v": str(obj)}
        if t is torch.Generator:
            self._slot(obj)
            return {"t": "generator", "device": str(obj.device), "state": self._encode_tensor(obj.get_state(), torch.Tensor)}
        if t in (torch.Tensor, torch.nn.Parameter):
            self._slot(obj)
            return self._encode_tensor(obj, t)
        if t is np.ndarray:
            self._slot(obj)
            return self._encode_ndarray(obj)
        if isinstance(obj, np.generic) and obj.dtype.kind in NUMPY_KINDS:
            return {"t": "npscalar", "dtype": obj.dtype.str, "blob": self._blob(("scalar", len(self.blobs)), obj.tobytes())}
        if isinstance(obj, np.dtype) and obj.kind in NUMPY_KINDS:
            return {"t": "npdtype", "v": obj.str}
        if isinstance(obj, type) and issubclass(obj, np.generic) and np.dtype(obj).kind in NUMPY_KINDS:
            return {"t": "nptype", "v": np.dtype(obj).str}
        if obj in (bool, int, float, complex, str, bytes, list, tuple, dict, set):
            return {"t": "pytype", "v": obj.__name__}
        if isinstance(obj, torch.nn.Module) and type(obj).__name__ in MODULES and MODULES[type(obj).__name__] is t:
            self._slot(obj)
            return {
                "t": "module", "cls": t.__name__, "kwargs": {k: self.encode(v, depth + 1) for k, v in _module_kwargs(obj).items()},
                "children": [[name, self.encode(child, depth + 1)] for name, child in obj.named_children()],
                "params": [[name, self.encode(p, depth + 1)] for name, p in obj.named_parameters(recurse=False)],
                "buffers": [[name, self.encode(b, depth + 1)] for name, b in obj.named_buffers(recurse=False)],
                "training": bool(obj.training),
            }
        if isinstance(obj, BaseException):
            names = [c.__name__ for c in t.__mro__ if c.__module__ == "builtins"]
            return {"t": "exception", "type": t.__qualname__, "bases": names, "msg": _safe_str(obj)}
        return {"t": "opaque", "module": str(getattr(t, "__module__", "")), "type": str(getattr(t, "__qualname__", "object")), "callable": callable(obj)}

    def _blob(self, key, data):
        if key not in self._blob_of:
            self._blob_of[key] = len(self.blobs)
            self.blobs.append(data)
        return self._blob_of[key]

    def _encode_tensor(self, obj, cls):
        t = obj.detach()
        if t.layout != torch.strided or t.is_quantized:
            return {"t": "opaque", "module": "torch", "type": f"Tensor[{t.layout}]", "callable": False}
        if t.is_conj() or t.is_neg():
            t = t.resolve_conj().resolve_neg()
        node = {
            "t": "tensor", "dtype": str(t.dtype).replace("torch.", ""), "device": str(t.device), "shape": list(t.shape),
            "stride": list(t.stride()), "offset": int(t.storage_offset()), "rg": bool(obj.requires_grad),
            "leaf": bool(obj.is_leaf), "param": cls is torch.nn.Parameter, "storage": None,
        }
        if t.device.type != "meta":
            storage = t.untyped_storage()
            key = ("storage", str(t.device), storage.data_ptr(), storage.nbytes())
            if key not in self._blob_of:
                cpu = storage if t.device.type == "cpu" else storage.cpu()
                raw = torch.empty(0, dtype=torch.uint8).set_(cpu, 0, (cpu.nbytes(),), (1,)).numpy()
                self._blob(key, raw.tobytes())
            node["storage"] = self._blob_of[key]
        return node

    def _encode_ndarray(self, a):
        if a.dtype.kind not in NUMPY_KINDS or a.dtype.hasobject or a.dtype.fields is not None:
            return {"t": "opaque", "module": "numpy", "type": f"ndarray[{a.dtype}]", "callable": False}
        low, high, _ = memory_region(a)
        region = self._blob(("region", low, high), region_bytes(a).tobytes() if high > low else b"")
        return {
            "t": "ndarray", "region": region, "dtype": a.dtype.str, "shape": list(a.shape),
            "strides": list(a.strides), "offset": a.__array_interface__["data"][0] - low, "writeable": bool(a.flags.writeable),
        }


def _safe_str(exc):
    try:
        text = str(exc)
    except Exception:  # a student's __str__ may itself raise
        text = "<message could not be read>"
    return text[:4000]


def memory_region(a):
    """``(low, high, owner)``: the byte range of the memory an ndarray views, and an object keeping it alive.

    The whole buffer of the array that owns the memory (so that a view keeps its place in it), or the
    array's own extent when the owner is not an ndarray.
    """
    root = a
    while True:
        if isinstance(root.base, np.ndarray):
            root = root.base
        elif isinstance(getattr(root.base, "base", None), np.ndarray):
            root = root.base.base  # np.lib.stride_tricks.as_strided's DummyArray keeps the array it views
        else:
            break
    # The root may own its memory (base None) or wrap a plain buffer (np.frombuffer over the bytes that
    # crossed): either way its whole extent is the region, so both sides measure offsets from the same start.
    if not isinstance(root.base, np.ndarray) and (root.flags.c_contiguous or root.flags.f_contiguous):
        low = root.__array_interface__["data"][0]
        return low, low + root.nbytes, root
    low, high = np.lib.array_utils.byte_bounds(a)
    return low, high, a


def region_bytes(a):
    """A ``uint8`` ndarray over the memory of :func:`memory_region` (sharing it, and keeping it alive)."""
    low, high, owner = memory_region(a)
    if owner.flags.c_contiguous or owner.flags.f_contiguous:
        flat = owner.reshape(-1, order="A") if owner.flags.c_contiguous else owner.T.reshape(-1)
        return flat.view(np.uint8)
    import ctypes

    raw = (ctypes.c_ubyte * max(0, high - low)).from_address(low)
    raw._keep = owner  # the ndarray owning the memory lives as long as this view of it
    return np.ctypeslib.as_array(raw)


MAGIC = b"TSX1"


def dumps(encoder, tree):
    """The message: magic, header length, JSON header (tree, blob offsets), blobs."""
    offsets, position = [], 0
    for blob in encoder.blobs:
        offsets.append([position, len(blob)])
        position += len(blob)
    header = json.dumps({"tree": tree, "blobs": offsets}, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<Q", len(header)), header, *encoder.blobs])


def loads(data):
    """The message :func:`dumps` wrote, as ``{"tree": ..., "blobs": [memoryview, ...]}`` (JSON and bytes: no code runs)."""
    data = memoryview(data)
    if len(data) < 12 or bytes(data[:4]) != MAGIC:
        raise CrossingError("malformed message")
    (size,) = struct.unpack("<Q", data[4:12])
    if size > len(data) - 12:
        raise CrossingError("malformed message")
    try:
        header = json.loads(bytes(data[12:12 + size]))
    except ValueError:
        raise CrossingError("malformed message header") from None
    body = data[12 + size:]
    blobs = []
    if not isinstance(header, dict) or not isinstance(header.get("blobs"), list):
        raise CrossingError("malformed message header")
    for entry in header["blobs"]:
        if not (isinstance(entry, list) and len(entry) == 2 and all(type(x) is int and x >= 0 for x in entry)
                and entry[0] + entry[1] <= len(body)):
            raise CrossingError("malformed message blobs")
        blobs.append(body[entry[0]:entry[0] + entry[1]])
    return {"tree": header.get("tree"), "blobs": blobs}


def _check_layout(size, itemsize, shape, strides, offset):
    """Raise unless an array of ``shape``/``strides`` starting ``offset`` bytes in stays inside ``size`` bytes."""
    if len(shape) != len(strides) or any(type(n) is not int or n < 0 for n in shape) or any(type(s) is not int for s in strides):
        raise CrossingError("malformed array layout")
    if type(offset) is not int:
        raise CrossingError("malformed array offset")
    if 0 in shape:
        return
    low = offset + sum(min(0, s * (n - 1)) for n, s in zip(shape, strides))
    high = offset + sum(max(0, s * (n - 1)) for n, s in zip(shape, strides)) + itemsize
    if low < 0 or high > size:
        raise CrossingError("array layout outside its memory")


def np_dtype(text):
    if type(text) is not str or len(text) > 16:
        raise CrossingError("malformed dtype")
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise CrossingError(f"unknown dtype {text!r}") from None
    if dtype.kind not in NUMPY_KINDS or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise CrossingError(f"unsupported dtype {text!r}")
    return dtype


def torch_dtype(name):
    dtype = getattr(torch, name, None) if type(name) is str and name.isidentifier() else None
    if type(dtype) is not torch.dtype:
        raise CrossingError(f"unknown torch dtype {name!r}")
    return dtype


class Decoder:
    """Rebuilds objects from a tree read by :func:`loads`; ``slots`` lists the mutable ones in order."""

    def __init__(self, message, ref_slots=None, view_builder=None):
        self.blobs = message["blobs"]
        self.slots = []
        self.nodes = {}  # slot number -> the node a tensor or ndarray was rebuilt from
        self.ref_slots = ref_slots  # objects a "ref" may point to (this side's arguments)
        self.view_builder = view_builder  # callable(node, value) -> object sharing an argument's memory
        self._region_arrays = {}
        self._storages = {}

    def decode(self, node, depth=0):
        if depth > MAX_DEPTH or not isinstance(node, dict):
            raise CrossingError("malformed data")
        kind = node.get("t")
        v = node.get("v")
        if kind == "none":
            return None
        if kind == "ellipsis":
            return Ellipsis
        if kind == "bytes":
            return bytes(self.blob(node.get("blob")))
        if kind in ("bool", "int", "float", "str"):
            expected = {"bool": bool, "int": int, "float": float, "str": str}[kind]
            if type(v) is not expected:
                raise CrossingError("malformed scalar")
            return v
        if kind == "complex":
            return complex(float(v[0]), float(v[1]))
        if kind in ("list", "tuple", "set", "frozenset"):
            holder = [] if kind == "list" else None
            if holder is not None:
                self.slots.append(holder)
            else:
                index = len(self.slots)
                self.slots.append(None)
            items = [self.decode(x, depth + 1) for x in v]
            if holder is not None:
                holder.extend(items)
                return holder
            obj = {"tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)
            self.slots[index] = obj
            return obj
        if kind == "dict":
            obj = {}
            self.slots.append(obj)
            keys = [self.decode(k, depth + 1) for k in node["k"]]
            values = [self.decode(val, depth + 1) for val in node["v"]]
            obj.update(zip(keys, values))
            return obj
        if kind == "slice":
            return slice(*(self.decode(x, depth + 1) for x in v))
        if kind == "range":
            return range(*(int(x) for x in v))
        if kind == "size":
            return torch.Size([int(x) for x in v])
        if kind == "dtype":
            return torch_dtype(v)
        if kind == "device":
            return torch.device(str(v))
        if kind == "generator":
            g = torch.Generator(device=str(node["device"]))
            g.set_state(self._tensor(node["state"], slot=False))
            self.slots.append(g)
            return g
        if kind == "tensor":
            return self._tensor(node)
        if kind == "ndarray":
            self.slots.append(None)
            index = len(self.slots) - 1
            self.slots[index] = obj = self._ndarray(node)
            self.nodes[index] = node
            return obj
        if kind == "npscalar":
            dtype = np_dtype(node["dtype"])
            raw = self.blob(node["blob"])
            if len(raw) != dtype.itemsize:
                raise CrossingError("malformed NumPy scalar")
            return np.frombuffer(bytes(raw), dtype=dtype)[0]
        if kind == "npdtype":
            return np_dtype(v)
        if kind == "nptype":
            return np_dtype(v).type
        if kind == "pytype":
            types = {t.__name__: t for t in (bool, int, float, complex, str, bytes, list, tuple, dict, set)}
            if v not in types:
                raise CrossingError("unknown type")
            return types[v]
        if kind == "module":
            return self._module(node, depth)
        if kind == "exception":
            return decode_exception(node)
        if kind == "opaque":
            cls = _opaque_class(str(node.get("module", "")), str(node.get("type", "object")))
            return cls(str(node.get("type")), str(node.get("module")))
        if kind == "ref":
            if self.ref_slots is None or not (0 <= node["slot"] < len(self.ref_slots)):
                raise CrossingError("a reference to an unknown argument")
            return self.ref_slots[node["slot"]]
        if kind == "view":
            value = self.decode(node["value"], depth + 1)
            if self.view_builder is None:
                return value
            return self.view_builder(node, value)
        raise CrossingError(f"unknown kind of data {kind!r}")

    def blob(self, index):
        if type(index) is not int or not 0 <= index < len(self.blobs):
            raise CrossingError("malformed blob reference")
        return self.blobs[index]

    def _storage(self, index):
        if index not in self._storages:
            raw = self.blob(index)
            flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if len(raw) else torch.empty(0, dtype=torch.uint8)
            self._storages[index] = flat.untyped_storage()
        return self._storages[index]

    def _tensor(self, node, slot=True):
        dtype, device = torch_dtype(node.get("dtype")), torch.device(str(node.get("device")))
        shape, stride, offset = node.get("shape"), node.get("stride"), node.get("offset")
        itemsize = dtype.itemsize
        if type(shape) is not list or type(stride) is not list or type(offset) is not int or offset < 0 or any(type(s) is not int or s < 0 for s in stride):
            raise CrossingError("malformed tensor layout")
        if device.type == "meta":
            _check_layout(1 << 62, 1, shape, stride, 0)
            t = torch.empty_strided(shape, stride, dtype=dtype, device="meta")
        else:
            storage = self._storage(node.get("storage"))
            _check_layout(storage.nbytes(), itemsize, shape, [s * itemsize for s in stride], offset * itemsize)
            t = torch.empty(0, dtype=dtype).set_(storage, offset, shape, stride)
            if device.type != "cpu":
                try:
                    t = t.to(device)
                except (RuntimeError, AssertionError) as e:
                    raise CrossingError(f"a tensor on {device} cannot be rebuilt here: {e}") from None
        if node.get("param"):
            t = torch.nn.Parameter(t, requires_grad=bool(node.get("rg")))
        elif node.get("rg"):
            t = t.requires_grad_(True)
            if not node.get("leaf", True):
                t = t.view_as(t)  # a tensor computed from a leaf, as the other side had it
        if slot:
            self.nodes[len(self.slots)] = node
            self.slots.append(t)
        return t

    def region(self, index):
        if index not in self._region_arrays:
            raw = self.blob(index)
            self._region_arrays[index] = np.frombuffer(bytearray(raw), dtype=np.uint8) if len(raw) else np.zeros(0, np.uint8)
        return self._region_arrays[index]

    def _ndarray(self, node):
        dtype = np_dtype(node["dtype"])
        buffer = self.region(node["region"])
        shape, strides, offset = list(node["shape"]), list(node["strides"]), node["offset"]
        _check_layout(buffer.nbytes, dtype.itemsize, shape, strides, offset)
        if 0 in shape:
            a = np.ndarray(shape, dtype=dtype)
        else:
            a = np.lib.stride_tricks.as_strided(
                buffer[offset:offset + dtype.itemsize].view(dtype), shape=shape, strides=strides, writeable=True
            )
        if not node.get("writeable", True):
            a.flags.writeable = False
        return a

    def _module(self, node, depth):
        cls = MODULES.get(node.get("cls"))
        if cls is None:
            raise CrossingError("unsupported module")
        index = len(self.slots)
        self.slots.append(None)
        kwargs = {str(k): self.decode(v, depth + 1) for k, v in node["kwargs"].items()}
        module = cls() if cls is torch.nn.Sequential else cls(**kwargs)
        self.slots[index] = module
        for name, child in node["children"]:
            module.add_module(str(name), self.decode(child, depth + 1))
        for name, param in node["params"]:
            value = self.decode(param, depth + 1)
            setattr(module, str(name), value if isinstance(value, torch.nn.Parameter) else torch.nn.Parameter(value))
        for name, buf in node["buffers"]:
            module.register_buffer(str(name), self.decode(buf, depth + 1))
        module.train(bool(node["training"]))
        return module


def decode_exception(node):
    """An exception of the first allowed class among the student's exception's classes, with its message."""
    names = [node.get("type")] + list(node.get("bases", []))
    if "KeyboardInterrupt" in names:  # how a time limit stops the student's function
        return TimeoutError("the function was interrupted: it did not finish within the time limit")
    cls = next((EXCEPTIONS[n] for n in names if n in EXCEPTIONS), Exception)
    text = str(node.get("msg", ""))
    student_type = str(node.get("type", "Exception"))
    exc = cls(text) if student_type == cls.__name__ else cls(f"{student_type}: {text}" if text else student_type)
    return exc


def same_values(a, b):
    """True if two tensors or ndarrays have the same type, dtype, shape and bytes (NaN payloads included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
            return False
        if a.device.type == "meta":
            return True
        # Fresh, densely packed copies: .contiguous() keeps odd strides on size-1 dimensions, and a
        # flattened view with stride != 1 cannot be reinterpreted as bytes.
        x = torch.empty(a.shape, dtype=a.dtype).copy_(a.detach().cpu()).reshape(-1)
        y = torch.empty(b.shape, dtype=b.dtype).copy_(b.detach().cpu()).reshape(-1)
        return torch.equal(x.view(torch.uint8), y.view(torch.uint8)) if x.numel() else True
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    return False


def is_nan(x):
    return isinstance(x, float) and math.isnan(x)


# --- the global state a call can change (both sides keep it in sync) -----------------------------------
# Each call is bracketed by two readings of the global state on each side, hundreds of times per notebook.
# ``np.random.get_state()`` (about 55 µs) and ``random.getstate()`` (about 12 µs) build 624 Python ints each,
# so a reading first takes a fingerprint of the generator's memory (about 1 µs) and reuses the previous
# reading's state when the fingerprint has not changed.
_MT_BYTES = 624 * 4 + 4  # an MT19937 state: uint32 key[624], then int pos


class Reading:
    """One global state entry: ``fingerprint`` (equal fingerprints mean equal states) and ``value`` (the
    state as the library returns it)."""

    __slots__ = ("fingerprint", "value")

    def __init__(self, fingerprint, value):
        self.fingerprint, self.value = fingerprint, value


class _MemoryFingerprint:
    """The bytes of a random generator's state, read from its memory; ``read`` returns None when not usable.

    ``address_of(owner)`` gives the address; the first readings are checked against the library's own
    ``getstate``-style answer (``expected``), and a mismatch turns this off for the process.
    """

    def __init__(self, address_of, expected):
        self._address_of, self._expected = address_of, expected
        self.usable = True
        self._checked = 0

    def read(self, owner):
        if not self.usable:
            return None
        import ctypes

        try:
            address = self._address_of(owner)
        except Exception:  # a replaced generator, or a library whose layout is not the expected one
            return None
        if address is None:
            return None
        return ctypes.string_at(address, _MT_BYTES)

    def confirm(self, raw, state):
        """Compare a fingerprint with the full state read just after it; a mismatch turns this off."""
        if raw is None or self._checked >= 3:
            return
        self._checked += 1
        try:
            if raw != self._expected(state):
                self.usable = False
        except Exception:
            self.usable = False


def _numpy_generator():
    # The RandomState that np.random.get_state reads (its bound method's instance).
    return getattr(np.random.get_state, "__self__", None)


def _numpy_address(generator):
    # BitGenerator.ctypes.state_address is NumPy's public pointer to the generator's C state
    # (https://numpy.org/doc/stable/reference/random/bit_generators/generated/numpy.random.MT19937.ctypes.html).
    bit_generator = getattr(generator, "_bit_generator", None)
    if type(bit_generator) is not np.random.MT19937:
        return None
    return bit_generator.ctypes.state_address


def _numpy_expected(state):
    _, keys, pos, _, _ = state
    return np.ascontiguousarray(keys, dtype="<u4").tobytes() + int(pos).to_bytes(4, "little", signed=True)


def _python_address(generator):
    # CPython's RandomObject (Modules/_randommodule.c): PyObject_HEAD, int index, uint32_t state[624].
    import _random

    if not isinstance(generator, _random.Random) or _random.Random.__basicsize__ < object.__basicsize__ + _MT_BYTES:
        return None
    return id(generator) + object.__basicsize__


def _python_expected(state):
    _, internal, _ = state
    *words, index = internal
    return int(index).to_bytes(4, "little", signed=True) + struct.pack("<624I", *words)


_NUMPY_MEMORY = _MemoryFingerprint(_numpy_address, _numpy_expected)
_PYTHON_MEMORY = _MemoryFingerprint(_python_address, _python_expected)


def _numpy_reading(prior):
    generator = _numpy_generator()
    raw = _NUMPY_MEMORY.read(generator)
    # The legacy generator also keeps a spare normal sample (has_gauss, gauss) outside the MT19937 state.
    # Drawing one when none is kept advances the MT19937 state, so an unchanged state with no spare
    # sample kept means nothing was drawn; with a spare kept, only the full state can tell.
    if raw is not None and prior is not None and type(prior.fingerprint) is tuple and len(prior.fingerprint) == 3 \
            and prior.fingerprint[0] == raw and prior.fingerprint[1] == 0:
        return prior
    state = np.random.get_state()
    _NUMPY_MEMORY.confirm(raw, state)
    return Reading((raw, state[3], state[4]) if raw is not None and _NUMPY_MEMORY.usable else state, state)


def _python_reading(prior):
    generator = getattr(random.getstate, "__self__", None)
    raw = _PYTHON_MEMORY.read(generator)
    if raw is not None:
        fingerprint = (raw, getattr(generator, "gauss_next", None))
        if prior is not None and prior.fingerprint == fingerprint:
            return prior
    state = random.getstate()
    _PYTHON_MEMORY.confirm(raw, state)
    return Reading(fingerprint if raw is not None and _PYTHON_MEMORY.usable else state, state)


def global_state(previous=None):
    """Torch's, NumPy's and Python's global random states, grad mode and default dtype: ``{key: Reading}``.

    ``previous``: an earlier reading in this process, whose entries are reused where the generator's
    memory is unchanged (about 10 µs in all instead of 70 µs). :func:`changed_state` converts what crosses.
    """
    previous = previous or {}
    torch_rng = torch.random.get_rng_state()
    grad, dtype = torch.is_grad_enabled(), torch.get_default_dtype()
    return {
        "torch_rng": Reading(torch_rng.numpy().tobytes(), torch_rng),
        "numpy_rng": _numpy_reading(previous.get("numpy_rng")),
        "python_rng": _python_reading(previous.get("python_rng")),
        "grad": Reading(grad, grad), "default_dtype": Reading(dtype, dtype),
    }


def _crossing_form(key, value):
    # A few tensors instead of 624 + 625 Python ints.
    if key == "numpy_rng":
        name, keys, pos, has_gauss, gauss = value
        return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))
    if key == "python_rng":
        version, internal, gauss = value
        return (version, torch.tensor(internal, dtype=torch.int64), gauss)
    return value


def _same(a, b):
    if a is b:
        return True
    fa, fb = a.fingerprint, b.fingerprint
    if type(fa) is not type(fb):
        return False
    if isinstance(fa, tuple) and len(fa) == 5 and fa[0] == "MT19937":  # a full NumPy state (no fingerprint)
        return np.array_equal(fa[1], fb[1]) and fa[2:] == fb[2:]
    return fa == fb


def changed_state(before, after):
    """The entries of :func:`global_state` ``after`` that differ from ``before`` (all when ``before`` is
    None), in the form that crosses: ``torch_rng`` a uint8 tensor, ``numpy_rng`` ``(name, int64 tensor of
    the keys, pos, has_gauss, gauss)``, ``python_rng`` ``(version, int64 tensor, gauss)``, ``grad`` a bool,
    ``default_dtype`` a ``torch.dtype``."""
    return {k: _crossing_form(k, v.value) for k, v in after.items()
            if before is None or k not in before or not _same(before[k], v)}
