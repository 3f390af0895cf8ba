"""A restricted reader for the pickle of a PyTorch zip checkpoint (`<archive>/data.pkl`): it runs nothing
from the file.

Two guards, in order:
1. Before anything is unpickled, every opcode is scanned (`pickletools.genops`) against an allow-list of what
   `torch.save` writes for state dicts and training checkpoints (protocols 2 to 5), while the pickle machine's
   stack is followed by counting: tuple nesting is bounded (hashing a tuple nested a million deep overflows
   the C stack), memo indices stay dense (a `LONG_BINPUT 4000000000` would allocate its whole memo), and the
   objects the pickle would build are estimated and bounded.
2. The unpickler's `find_class` hands out only this module's own inert objects, for an explicit allow-list of
   globals; anything else is refused before it is called. Tensors come back as `Tensor` records (storage
   key, dtype, offset, shape, stride), storages as `Storage` records (the persistent ids); nothing is read.
"""

from __future__ import annotations

import gc
import io
import pickle
import pickletools
import re
from dataclasses import dataclass
from typing import Any

from wsel.checkpoint.header import short_repr
from wsel.errors import CheckpointError

# torch's dtypes by their pickled name (`torch.float8_e4m3fn` is written as the global `torch float8_e4m3fn`):
# the safetensors dtype of each one wsel reads, None for the others (a tensor of one is refused by name).
# float4_e2m1fn_x2 packs two values per element, unlike safetensors' F4 shape, and is refused too.
TORCH_DTYPES: dict[str, str | None] = {
    "float32": "F32",
    "float64": "F64",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "uint16": "U16",
    "uint32": "U32",
    "uint64": "U64",
    "bool": "BOOL",
    "complex64": "C64",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0",
    **dict.fromkeys(
        ("complex32", "complex128", "float4_e2m1fn_x2", "qint8", "qint32", "quint8", "quint4x2", "quint2x4")
        + ("bits8", "bits16", "bits1x8", "bits2x4", "bits4x2")
        + tuple(f"int{n}" for n in range(1, 8))
        + tuple(f"uint{n}" for n in range(1, 8))
    ),
}

# The typed storage classes `_rebuild_tensor_v2` names in persistent ids, and their dtypes.
STORAGE_TYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}

MAX_DIMS = 64  # far above any real tensor; keeps size products small
_BELOW = 2**63  # torch's sizes, strides and offsets are int64
MAX_KEY_CHARS = 1024  # a storage key names the entry `<archive>/data/<key>`; torch's are short numbers
MAX_TUPLE_DEPTH = 1000  # torch's tuples nest 2 deep; hashing a tuple nested ~1,000,000 deep crashes CPython
# The objects a pickle may build, estimated (`_MOVES`): a state dict of 1,000,000 tensors (wsel's limit) comes
# to about 1.3 GB; a data.pkl of 200 MB of empty sets would take 45 GB.
MAX_OBJECT_BYTES = 2 << 30


class _Malformed(Exception):
    """A pickle torch.save never writes: the message says what is wrong."""


def _no_state(record: object, state: object) -> None:
    """BUILD on a record: refused (a frozen dataclass with slots would take the state as new field values)."""
    raise _Malformed(f"it gives a {type(record).__name__} record a state (BUILD)")


@dataclass(frozen=True, slots=True)
class Dtype:
    """A `torch.<dtype>` global (the dtype argument of `_rebuild_tensor_v3`)."""

    name: str
    __setstate__ = _no_state


@dataclass(frozen=True, slots=True)
class StorageType:
    """A `torch.<X>Storage` global: `dtype` is its elements' torch dtype; None for `torch.storage.UntypedStorage`,
    whose size counts bytes."""

    dtype: str | None
    __setstate__ = _no_state


@dataclass(frozen=True, slots=True)
class Storage:
    """A persistent id `('storage', type, key, location, numel)`: the bytes of entry `<archive>/data/<key>`."""

    key: str
    dtype: str | None  # torch dtype of a typed storage; None: untyped, `numel` counts bytes
    numel: int
    location: str  # where it was saved from ("cpu", "cuda:0"); unused
    __setstate__ = _no_state


@dataclass(frozen=True, slots=True)
class Tensor:
    """What `torch._utils._rebuild_tensor_v2/v3` would rebuild, as a record."""

    storage: Storage
    dtype: str  # torch dtype name ("float32")
    offset: int  # in elements of `dtype`
    shape: tuple[int, ...]
    stride: tuple[int, ...]  # in elements
    flags: tuple[str, ...]  # torch's tensor metadata bits that are set ("conj", "neg"): bytes are not values
    __setstate__ = _no_state


class Inert:
    """What a harmless non-tensor global beside the weights becomes (a training script's `args`, a numpy
    metric): callable with anything, built with anything, never a tensor, never runs anything."""

    __slots__ = ()

    def __init__(self, *args: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


class StateDict(dict[Any, Any]):
    """A `collections.OrderedDict` (a module's state dict): a dict whose `BUILD` state (`_metadata`, the
    modules' versions) is dropped."""

    def __setstate__(self, state: object) -> None:
        pass


_TENSOR_TYPE = Inert()  # the `torch.Tensor` global, as `_rebuild_from_type_v2`'s type argument only


def _ordered_dict(*args: object) -> StateDict:
    if args:
        raise _Malformed("OrderedDict is rebuilt with arguments")
    return StateDict()


def _rebuild_tensor_v2(
    storage: object,
    offset: object,
    shape: object,
    stride: object,
    requires_grad: object,
    hooks: object,
    metadata: object = None,
) -> Tensor:
    if not isinstance(storage, Storage) or storage.dtype is None:
        raise _Malformed("_rebuild_tensor_v2 is given no typed storage")
    return _tensor(storage, storage.dtype, offset, shape, stride, metadata)


def _rebuild_tensor_v3(
    storage: object,
    offset: object,
    shape: object,
    stride: object,
    requires_grad: object,
    hooks: object,
    dtype: object,
    metadata: object = None,
) -> Tensor:
    if not isinstance(storage, Storage) or storage.dtype is not None or not isinstance(dtype, Dtype):
        raise _Malformed("_rebuild_tensor_v3 is given no untyped storage and dtype")
    return _tensor(storage, dtype.name, offset, shape, stride, metadata)


def _rebuild_parameter(data: object, requires_grad: object, hooks: object, state: object = None) -> Tensor:
    if not isinstance(data, Tensor):
        raise _Malformed("a Parameter is rebuilt from something that is not a tensor")
    return data  # an nn.Parameter is its tensor; requires_grad, hooks and Python attributes are dropped


def _rebuild_from_type_v2(func: object, new_type: object, args: object, state: object) -> Tensor:
    """A tensor saved with Python attributes: `func(*args)`, the attributes dropped."""
    rebuilds = func is _rebuild_tensor_v2 or func is _rebuild_tensor_v3
    if not rebuilds or new_type is not _TENSOR_TYPE or type(args) is not tuple:
        raise _Malformed("_rebuild_from_type_v2 is given something other than a tensor's rebuild")
    return _rebuild_tensor_v2(*args) if func is _rebuild_tensor_v2 else _rebuild_tensor_v3(*args)


def _dims(value: object, what: str) -> tuple[int, ...]:
    if type(value) is not tuple or len(value) > MAX_DIMS or not all(type(d) is int and 0 <= d < _BELOW for d in value):
        raise _Malformed(f"a tensor's {what} is not a tuple of at most {MAX_DIMS} non-negative int64s")
    return value


def _tensor(storage: Storage, dtype: str, offset: object, shape: object, stride: object, metadata: object) -> Tensor:
    if type(offset) is not int or not 0 <= offset < _BELOW:
        raise _Malformed("a tensor's storage offset is not a non-negative int64")
    size, strides = _dims(shape, "size"), _dims(stride, "stride")
    if len(size) != len(strides):
        raise _Malformed("a tensor's size and stride differ in length")
    if metadata is None:
        flags: tuple[str, ...] = ()
    elif type(metadata) is dict and all(type(k) is str and type(v) is bool for k, v in metadata.items()):
        flags = tuple(sorted(k for k, v in metadata.items() if v))
    else:
        raise _Malformed("a tensor's metadata is not a dict of flags")
    return Tensor(storage, dtype, offset, size, strides, flags)


# Every global a pickle may name, and what it becomes. The tensor rebuilds torch.save writes for dense tensors
# (and nn.Parameter, with or without Python attributes); their storage types and dtypes; OrderedDict (every
# module's state_dict()); and `torch.device` (a device in a checkpoint's args). Nothing else from torch: not the
# sparse, quantized, nested, meta or subclass rebuilds, not torch.load or any torch.nn module.
GLOBALS: dict[tuple[str, str], object] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TENSOR_TYPE,  # only as _rebuild_from_type_v2's type: a marker, not the class
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch.storage", "UntypedStorage"): StorageType(None),
    **{("torch", name): StorageType(dtype) for name, dtype in STORAGE_TYPES.items()},
    **{("torch", name): Dtype(name) for name in TORCH_DTYPES},
    ("torch", "device"): Inert,
    # Harmless values training scripts save beside the weights, all read as Inert (so that such files load):
    # argparse.Namespace (timm, DeiT and ConvNeXt save their `args`), numpy scalars and arrays (metrics, seeds;
    # `numpy.core` before numpy 2, `numpy._core` since), `_codecs.encode` (how protocol 2 writes bytes), and
    # sets (`__builtin__` is how protocol 2 names builtins).
    ("argparse", "Namespace"): Inert,
    ("numpy.core.multiarray", "scalar"): Inert,
    ("numpy._core.multiarray", "scalar"): Inert,
    ("numpy.core.multiarray", "_reconstruct"): Inert,
    ("numpy._core.multiarray", "_reconstruct"): Inert,
    ("numpy.core.numeric", "_frombuffer"): Inert,  # an array at protocol 5
    ("numpy._core.numeric", "_frombuffer"): Inert,
    ("numpy", "dtype"): Inert,
    ("numpy", "ndarray"): Inert,
    ("_codecs", "encode"): Inert,
    ("__builtin__", "set"): Inert,
    ("builtins", "set"): Inert,
    ("__builtin__", "frozenset"): Inert,
    ("builtins", "frozenset"): Inert,
}

# The opcodes torch.save writes for checkpoints (seen in the pickles of torch 2.13 at protocols 2, 4 and 5, with
# state dicts of every dtype, nn.Parameter, optimizer states, argparse args, numpy values), and the containers
# and numbers plain Python data needs. NEWOBJ is how an argparse.Namespace is written; it builds only from a
# class `find_class` returns, and the only class it returns is Inert. Everything else is refused: INST, OBJ,
# NEWOBJ_EX, EXT1/2/4 (the copyreg registry), PERSID (text), READONLY_BUFFER/NEXT_BUFFER (out-of-band data),
# LONG4 (integers of more than 255 bytes), DUP, and protocol 0's text opcodes.
#
# Each with how it moves the stack: (values popped, whether it pops to the mark, what it leaves, what it builds
# in bytes, roughly as CPython's objects take: a stack slot 8, an int 32, a str 64 + its length, a dict 64, a set
# 216, a record 200); what it leaves: _LEAF a new value, _TUPLE a tuple or frozenset of what it popped (+ 8 per
# item), _KEEP the container below what it popped, which stays (+ 16 per item added), _GONE nothing; or the
# memo and mark opcodes, handled on their own.
_LEAF, _TUPLE, _KEEP, _GONE, _PUT, _GET, _MARK, _STOP, _NOTHING = range(9)
_MOVES: dict[str, tuple[int, bool, int, int]] = {
    **dict.fromkeys(("NONE", "NEWTRUE", "NEWFALSE", "BININT1", "GLOBAL"), (0, False, _LEAF, 8)),
    **dict.fromkeys(("BININT", "BININT2", "LONG1", "BINFLOAT"), (0, False, _LEAF, 40)),
    **dict.fromkeys(
        ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"),
        (0, False, _LEAF, 72),
    ),
    **dict.fromkeys(("EMPTY_DICT", "EMPTY_LIST"), (0, False, _LEAF, 72)),
    "EMPTY_SET": (0, False, _LEAF, 224),
    "EMPTY_TUPLE": (0, False, _TUPLE, 8),
    "TUPLE1": (1, False, _TUPLE, 48),
    "TUPLE2": (2, False, _TUPLE, 48),
    "TUPLE3": (3, False, _TUPLE, 48),
    "TUPLE": (0, True, _TUPLE, 48),
    "FROZENSET": (0, True, _TUPLE, 224),
    "APPEND": (1, False, _KEEP, 0),
    "BUILD": (1, False, _KEEP, 0),
    "SETITEM": (2, False, _KEEP, 0),
    "APPENDS": (0, True, _KEEP, 0),
    "SETITEMS": (0, True, _KEEP, 0),
    "ADDITEMS": (0, True, _KEEP, 0),
    "REDUCE": (2, False, _LEAF, 208),
    "NEWOBJ": (2, False, _LEAF, 208),
    "BINPERSID": (1, False, _LEAF, 208),
    "STACK_GLOBAL": (2, False, _LEAF, 8),
    "POP": (1, False, _GONE, 0),
    "POP_MARK": (0, True, _GONE, 0),
    **dict.fromkeys(("BINPUT", "LONG_BINPUT", "MEMOIZE"), (0, False, _PUT, 8)),
    **dict.fromkeys(("BINGET", "LONG_BINGET"), (0, False, _GET, 8)),
    "MARK": (0, False, _MARK, 8),
    "STOP": (0, False, _STOP, 0),
    **dict.fromkeys(("PROTO", "FRAME"), (0, False, _NOTHING, 0)),
}
OPCODES = frozenset(_MOVES)


def load(data: bytes, where: str) -> Any:
    """The object `data` (a data.pkl) pickles, with tensors as `Tensor` records. Raises CheckpointError
    `<where>: data.pkl ...` (one line) for a pickle that needs anything outside the allow-lists."""
    scan(data, where)
    unpickler = _Unpickler(io.BytesIO(data), where)
    enabled = gc.isenabled()
    gc.disable()  # no reference cycles are built: the cyclic collector would walk the growing heap for nothing
    try:
        return unpickler.load()
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError(f"{where}: data.pkl nests too deeply to read") from None
    except MemoryError:
        raise CheckpointError(f"{where}: data.pkl builds more objects than memory holds") from None
    except _Malformed as e:
        raise CheckpointError(f"{where}: data.pkl is not what torch.save writes: {e}") from None
    except Exception as e:  # a pickle error, or a TypeError from calling an inert object wrongly
        problem = _text(f"{type(e).__name__}: {e}")
        raise CheckpointError(f"{where}: data.pkl is not what torch.save writes ({problem})") from None
    finally:
        if enabled:
            gc.enable()


def scan(data: bytes, where: str) -> None:
    """Check every opcode of `data` against OPCODES, following the stack by counting (see the module's
    docstring), before anything is unpickled. Raises CheckpointError naming the first problem."""

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{where}: data.pkl {problem}; refused (nothing from the file was run)")

    depths: list[int] = []  # the stack: each value's tuple nesting depth (0: not a tuple or frozenset)
    marks: list[int] = []  # where the MARKs stand: as in CPython's unpickler, no value is popped past one
    memo: list[int] = []
    estimate = 0
    end = -1
    pos: int | None = 0
    try:
        for op, arg, pos in pickletools.genops(data):
            move = _MOVES.get(op.name)
            if move is None:
                raise fail(f"uses the pickle opcode {op.name} (at byte {pos}), which torch.save never writes")
            pops, to_mark, kind, cost = move
            estimate += cost
            fence = marks[-1] if marks else 0
            if kind <= _GONE:
                if to_mark:
                    if not marks:
                        raise _Malformed("pops to a mark that is not there")
                    first = marks.pop()
                    fence = marks[-1] if marks else 0
                else:
                    first = len(depths) - pops
                    if first < fence:
                        raise _Malformed("pops more values than the stack holds")
                if kind == _TUPLE:
                    depth = 1 + max(depths[first:], default=0)
                    if depth > MAX_TUPLE_DEPTH:
                        raise fail(f"nests tuples more than {MAX_TUPLE_DEPTH} deep (at byte {pos})")
                estimate += (8 if kind == _TUPLE else 16) * (len(depths) - first)
                if isinstance(arg, (str, bytes, bytearray)):
                    estimate += len(arg)
                del depths[first:]
                if kind == _LEAF:
                    depths.append(0)
                elif kind == _TUPLE:
                    depths.append(depth)
                elif kind == _KEEP and len(depths) <= fence:
                    raise _Malformed(f"adds with {op.name} to nothing")
            elif kind == _PUT:
                index = len(memo) if arg is None else arg  # MEMOIZE has no argument
                if type(index) is not int or index > len(memo) or len(depths) <= fence:  # numbered 0, 1, 2, ...
                    raise _Malformed("memoizes out of order")
                memo[index : index + 1] = [depths[-1]]
            elif kind == _GET:
                if type(arg) is not int or arg >= len(memo):
                    raise _Malformed("reads a memo entry never stored")
                depths.append(memo[arg])
            elif kind == _MARK:
                marks.append(len(depths))
            elif kind == _STOP:
                if len(depths) != 1 or marks:
                    raise _Malformed(f"stops with {len(depths)} values on the stack")
                end = (pos or 0) + 1
            if estimate > MAX_OBJECT_BYTES:
                raise fail(f"would build more than {MAX_OBJECT_BYTES >> 20} MB of objects (by byte {pos})")
    except _Malformed as e:
        raise fail(f"is not what torch.save writes: it {e} (at byte {pos})") from None
    except ValueError as e:  # genops: truncated, an unknown opcode, a string that is not UTF-8
        raise fail(f"is truncated or malformed ({_text(str(e))})") from None
    if end != len(data):
        raise fail(f"has {len(data) - end} bytes after its end")


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, where: str) -> None:
        super().__init__(file, fix_imports=False, encoding="ASCII", errors="strict")
        self.where = where
        self.storages: dict[str, Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = GLOBALS.get((module, name)) if type(module) is str and type(name) is str else None
        if found is None:
            raise CheckpointError(
                f"{self.where}: data.pkl calls {_text(f'{module}.{name}')}, which a state dict never needs; "
                "refused (nothing from the file was run)"
            )
        return found

    def persistent_load(self, pid: Any) -> Storage:
        if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
            raise _Malformed("a persistent id is not ('storage', type, key, location, size)")
        _, kind, key, location, numel = pid
        if not isinstance(kind, StorageType):
            raise _Malformed("a persistent id names no storage type")
        if type(key) is not str or not 0 < len(key) <= MAX_KEY_CHARS or type(location) is not str:
            raise _Malformed("a persistent id's key or location is not a short string")
        if type(numel) is not int or not 0 <= numel < _BELOW:
            raise _Malformed(f"storage {short_repr(key)} has a size that is not a non-negative int64")
        storage = Storage(key, kind.dtype, numel, location)
        known = self.storages.setdefault(key, storage)
        if known != storage:
            raise _Malformed(f"storage {short_repr(key)} is described twice, differently")
        return known


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # and lone surrogates, which no terminal prints


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _text(text: str, limit: int = 200) -> str:
    """`text` from the file, for a one-line message: control characters escaped, at most `limit` characters."""
    text = _CONTROL.sub(_escape, text)
    return text if len(text) <= limit else text[:limit] + "..."
