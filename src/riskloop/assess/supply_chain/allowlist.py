"""Which globals a model file may import: allowlist first, denylist as the explanation.

A pickle names every callable it needs as ``module`` + ``name`` (``name`` may be a dotted
path: protocol 4 resolves ``Bdb.run`` attribute by attribute). A global is

- **safe** when it is on the allowlist: rebuilding NumPy arrays and dtypes, PyTorch tensors,
  storages and stock ``torch.nn`` layers, ``collections`` containers, plain data types, and
  the classes of scikit-learn's estimator packages;
- **dangerous** (critical) when it is on the denylist, with the reason: code execution,
  shell, network, file access, module import, call-chain builders (``operator.attrgetter``,
  ``functools.partial``), nested pickle loaders, native code. The list follows the public
  bypass advisories of picklescan, modelscan and fickling (2023-2026) and the Python
  standard library;
- **unknown** otherwise: the file needs an explicit trust decision before it is loaded.

A name that reaches interpreter internals through a dunder attribute (``numpy.__builtins__``,
``X.__init__.__globals__``) is dangerous unless listed exactly. Protocols 0-2 write Python 2
names (``__builtin__``, ``httplib``, ``copy_reg``); the unpickler maps them, so both the name as
written and its mapping are classified and the worse verdict counts.

Nothing here imports the modules it names.
"""

from __future__ import annotations

import _compat_pickle
import re
from dataclasses import dataclass

SAFE, DANGEROUS, UNKNOWN = "safe", "dangerous", "unknown"

R_EXEC = "runs Python code or shell commands while the file loads"
R_SHELL = "starts processes or shell commands"
R_NET = "opens network connections"
R_FILE = "reads, writes or deletes files"
R_IMPORT = "imports or resolves arbitrary modules by name"
R_CHAIN = "builds arbitrary call chains (attribute access, partial application)"
R_NESTED = "loads a nested serialized object, which runs with the same power"
R_NATIVE = "loads native code"
R_PROCESS = "controls the interpreter or process (exit, debugger, threads, signals)"
R_CODE = "builds code or function objects"
R_INTERNALS = "reaches interpreter internals through a dunder attribute"
R_MAIN = "imports a package's __main__ module, which runs its command-line entry point"

# (module, name or None for the whole module and its submodules, reason)
_DENY: tuple[tuple[str, str | None, str], ...] = (
    *((m, None, R_SHELL) for m in (
        "os", "posix", "nt", "subprocess", "_posixsubprocess", "pty", "commands", "popen2",
        "_aix_support", "_osx_support", "_pyrepl", "_winapi", "msvcrt", "winreg", "_winreg",
        "multiprocessing", "concurrent", "asyncio", "uuid", "webbrowser", "mailcap",
        "ensurepip", "pip", "venv", "distutils", "setuptools", "pkg_resources",
    )),
    *((m, None, R_EXEC) for m in (
        "runpy", "code", "codeop", "timeit", "cProfile", "profile", "trace", "pdb", "bdb",
        "doctest", "idlelib", "lib2to3", "pydoc", "test", "unittest", "compileall",
        "py_compile", "site", "atexit", "sched", "cloudpickle", "dill", "rlcompleter",
    )),
    *((m, None, R_IMPORT) for m in ("importlib", "imp", "pkgutil", "zipimport")),
    *((m, None, R_CODE) for m in ("types", "marshal", "ast", "new")),
    *((m, None, R_NATIVE) for m in ("ctypes", "_ctypes", "cffi")),
    *((m, None, R_PROCESS) for m in ("sys", "threading", "_thread", "signal", "gc", "faulthandler")),
    *((m, None, R_NESTED) for m in ("pickle", "_pickle", "cPickle", "shelve", "dbm")),
    *((m, None, R_FILE) for m in (
        "io", "_io", "fileinput", "shutil", "tempfile", "linecache", "mmap", "tarfile",
        "zipfile", "logging", "sqlite3", "glob",
    )),
    *((m, None, R_NET) for m in (
        "socket", "_socket", "ssl", "_ssl", "http", "httplib", "urllib", "urllib2", "urllib3",
        "requests", "httpx", "aiohttp", "ftplib", "smtplib", "poplib", "imaplib", "nntplib",
        "telnetlib", "xmlrpc", "xmlrpclib", "socketserver", "SocketServer", "wsgiref",
        "asyncore", "asynchat", "smtpd",
    )),
    ("builtins", "eval", R_EXEC), ("builtins", "exec", R_EXEC), ("builtins", "compile", R_CODE),
    ("builtins", "execfile", R_EXEC), ("builtins", "apply", R_CHAIN),
    ("builtins", "open", R_FILE), ("builtins", "file", R_FILE), ("builtins", "input", R_PROCESS),
    ("builtins", "__import__", R_IMPORT), ("builtins", "reload", R_IMPORT),
    ("builtins", "getattr", R_CHAIN), ("builtins", "setattr", R_CHAIN),
    ("builtins", "delattr", R_CHAIN), ("builtins", "globals", R_INTERNALS),
    ("builtins", "locals", R_INTERNALS), ("builtins", "vars", R_INTERNALS),
    ("builtins", "breakpoint", R_PROCESS), ("builtins", "help", R_PROCESS),
    ("builtins", "exit", R_PROCESS), ("builtins", "quit", R_PROCESS),
    ("builtins", "__build_class__", R_CODE), ("builtins", "memoryview", R_INTERNALS),
    *(("operator", n, R_CHAIN) for n in ("attrgetter", "itemgetter", "methodcaller")),
    *(("_operator", n, R_CHAIN) for n in ("attrgetter", "itemgetter", "methodcaller")),
    *(("functools", n, R_CHAIN) for n in ("partial", "partialmethod", "reduce", "singledispatch")),
    ("_functools", "partial", R_CHAIN), ("_functools", "reduce", R_CHAIN),
    ("codecs", "open", R_FILE), ("gzip", "open", R_FILE), ("bz2", "open", R_FILE),
    ("lzma", "open", R_FILE), ("platform", "popen", R_SHELL),
    # PyTorch helpers that load, compile or run code (picklescan/fickling advisories)
    ("torch", "load", R_NESTED), ("torch", "save", R_FILE), ("torch", "compile", R_EXEC),
    ("torch.serialization", None, R_NESTED), ("torch._inductor", None, R_EXEC),
    ("torch.utils.bottleneck", None, R_EXEC), ("torch.utils.collect_env", None, R_SHELL),
    ("torch.utils.cpp_extension", None, R_NATIVE), ("torch.utils.data.datapipes", None, R_NESTED),
    ("torch.utils._config_module", None, R_NESTED), ("torch.jit", None, R_EXEC),
    ("torch._dynamo", None, R_EXEC), ("torch.fx", None, R_EXEC), ("torch.hub", None, R_NET),
    ("torch.package", None, R_NESTED), ("torch.distributed", None, R_NET),
    ("torch.multiprocessing", None, R_SHELL), ("torch.testing", None, R_EXEC),
    ("torch.export", "load", R_NESTED), ("torch.ops", None, R_NATIVE),
    ("torch._C", "_jit_pass_lower_all_tuples", R_EXEC), ("torch.classes", None, R_NATIVE),
    # NumPy helpers that run code, load pickles or touch files
    ("numpy.f2py", None, R_EXEC), ("numpy.testing", None, R_EXEC), ("numpy.distutils", None, R_EXEC),
    ("numpy.ctypeslib", None, R_NATIVE), ("numpy", "load", R_NESTED), ("numpy", "loads", R_NESTED),
    ("numpy.lib.npyio", None, R_NESTED), ("numpy.lib._npyio_impl", None, R_NESTED),
    ("numpy.lib.format", None, R_NESTED), ("numpy", "fromfile", R_FILE), ("numpy", "memmap", R_FILE),
    ("numpy.core.memmap", None, R_FILE), ("numpy._core.memmap", None, R_FILE),
    ("numpy", "save", R_FILE), ("numpy", "savez", R_FILE), ("numpy", "savetxt", R_FILE),
    ("numpy", "loadtxt", R_FILE), ("numpy", "genfromtxt", R_FILE), ("numpy", "fromregex", R_FILE),
    # other ML libraries' loaders and side doors
    ("joblib", "load", R_NESTED), ("joblib.numpy_pickle", "load", R_NESTED),
    ("joblib.numpy_pickle_compat", None, R_FILE), ("joblib", "dump", R_FILE),
    ("sklearn.datasets", None, R_NET), ("sklearn.externals", None, R_NESTED),
    ("sklearn.utils._testing", None, R_EXEC), ("pandas.io", None, R_FILE),
    ("pandas", "read_pickle", R_NESTED), ("pandas", "eval", R_EXEC), ("tensorflow.io", None, R_FILE),
    ("keras.utils", "get_file", R_NET), ("huggingface_hub", None, R_NET),
)

_SAFE_EXACT: frozenset[str] = frozenset({
    # plain data types
    *(f"builtins.{n}" for n in (
        "set", "frozenset", "slice", "range", "complex", "bytearray", "bytes", "dict", "list",
        "tuple", "int", "float", "bool", "str", "object", "NotImplemented", "Ellipsis",
    )),
    "collections.OrderedDict", "collections.defaultdict", "collections.deque",
    "collections.Counter", "copyreg._reconstructor", "copyreg.__newobj__",
    "copyreg.__newobj_ex__", "_codecs.encode", "datetime.datetime", "datetime.date",
    "datetime.time", "datetime.timedelta", "datetime.timezone", "decimal.Decimal",
    "fractions.Fraction", "uuid.UUID", "argparse.Namespace", "types.SimpleNamespace",
    "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath", "pathlib.PurePosixPath",
    "pathlib.PureWindowsPath",
    # NumPy arrays, scalars, dtypes, random generators
    *(f"numpy.{m}.{n}" for m in ("core.multiarray", "_core.multiarray")
      for n in ("_reconstruct", "scalar")),
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
    "numpy.ndarray", "numpy.dtype", "numpy.ma.core._mareconstruct", "numpy.ma.core.MaskedArray",
    "numpy.matrixlib.defmatrix.matrix", "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random.bit_generator.SeedSequence",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    "numpy.random._mt19937.MT19937", "numpy.random._pcg64.PCG64",
    "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox",
    "numpy.random._sfc64.SFC64", "numpy.random.mtrand.RandomState",
    "numpy.random._generator.Generator",
    # PyTorch tensors, parameters, storages
    *(f"torch._utils.{n}" for n in (
        "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
        "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor",
        "_rebuild_nested_tensor", "_rebuild_meta_tensor_no_storage",
        "_rebuild_wrapper_subclass", "_rebuild_device_tensor_from_numpy",
        "_rebuild_device_tensor_from_cpu_tensor",
    )),
    "torch._tensor._rebuild_from_type", "torch._tensor._rebuild_from_type_v2",
    "torch.storage._load_from_bytes", "torch.storage.TypedStorage",
    "torch.storage.UntypedStorage", "torch.serialization._get_layout",
    "torch.nn.parameter.Parameter", "torch.nn.parameter.Buffer", "torch.Tensor",
    "torch._tensor.Tensor", "torch.Size", "torch.device", "torch.torch_version.TorchVersion",
    *(f"torch.{n}" for n in (
        "float32", "float", "float64", "double", "float16", "half", "bfloat16", "int8",
        "int16", "short", "int32", "int", "int64", "long", "uint8", "uint16", "uint32",
        "uint64", "bool", "complex32", "complex64", "complex128", "cfloat", "cdouble",
        "chalf", "qint8", "quint8", "qint32", "quint4x2", "quint2x4", "float8_e4m3fn",
        "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "strided",
        "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc", "_mkldnn",
        "jagged", "contiguous_format", "channels_last", "channels_last_3d",
        "preserve_format", "per_tensor_affine", "per_channel_affine",
        "per_tensor_symmetric", "per_channel_symmetric",
        "per_channel_affine_float_qparams", "UntypedStorage", "TypedStorage",
    )),
    # joblib's array wrapper (the array bytes that follow it are followed exactly)
    "joblib.numpy_pickle.NumpyArrayWrapper",
    # scikit-learn scoring functions stored on estimators
    *(f"sklearn.feature_selection._univariate_selection.{n}" for n in (
        "f_classif", "f_regression", "chi2", "r_regression",
    )),
    *(f"sklearn.feature_selection._mutual_info.{n}" for n in (
        "mutual_info_classif", "mutual_info_regression",
    )),
})

_CLASS = re.compile(r"^_?[A-Z][A-Za-z0-9_]*$")
_SKLEARN_EXCLUDED = ("sklearn.datasets", "sklearn.externals", "sklearn.utils._testing",
                     "sklearn.experimental", "sklearn.conftest")
_SKLEARN_PARTS = re.compile(r"^sklearn(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_NUMPY_SCALARS = frozenset({
    "bool_", "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "intc", "uintc", "intp", "uintp", "int_", "uint", "longlong", "ulonglong", "short",
    "ushort", "byte", "ubyte", "float16", "float32", "float64", "half", "single", "double",
    "longdouble", "complex64", "complex128", "csingle", "cdouble", "clongdouble", "str_",
    "bytes_", "object_", "void", "datetime64", "timedelta64",
})
_TORCH_STORAGE = re.compile(r"^[A-Za-z0-9]*Storage$")


def _pattern_safe(module: str, name: str) -> bool:
    """Families too large to list: sklearn estimator classes, stock torch layers, storages."""
    if "." in name:
        return False
    if module.startswith("sklearn."):
        return (bool(_CLASS.match(name)) and bool(_SKLEARN_PARTS.match(module))
                and not any(_under(module, p) for p in _SKLEARN_EXCLUDED)
                and ".tests" not in module)
    if module.startswith("torch.nn.modules."):
        return bool(_CLASS.match(name))
    if module == "torch":
        return bool(_TORCH_STORAGE.match(name))
    if module == "numpy":
        return name in _NUMPY_SCALARS
    if module == "numpy.dtypes":
        return bool(re.match(r"^[A-Za-z0-9]+DType$", name))
    if module.startswith("scipy.sparse."):
        return bool(_CLASS.match(name)) and ".linalg" not in module
    return False


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _is_dunder(part: str) -> bool:
    return len(part) > 4 and part.startswith("__") and part.endswith("__")


@dataclass(frozen=True)
class Verdict:
    """The classification of one global: ``safe``, ``dangerous`` or ``unknown``, and why."""

    status: str
    reason: str
    resolved: str  # the name that decided, after Python 2 name mapping


def python2_mapping(module: str, name: str) -> tuple[str, str] | None:
    """How protocols 0-2 rename a Python 2 global (``fix_imports``), or None."""
    key = (module, name)
    if key in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[key]
    if module in _compat_pickle.IMPORT_MAPPING:
        return _compat_pickle.IMPORT_MAPPING[module], name
    return None


class Allowlist:
    """Classify globals; ``allow`` and ``deny`` add the user's own entries to the tables.

    Entries are ``module.name`` (exact) or ``module.*`` (the module, its submodules and
    everything in them). The user's deny beats the user's allow, which beats the built-ins.
    """

    def __init__(self, *, allow: tuple[str, ...] = (), deny: tuple[str, ...] = ()) -> None:
        self.allow = tuple(allow)
        self.deny = tuple(deny)

    def classify(self, module: str, name: str) -> Verdict:
        raw = self._classify_one(module, name)
        mapped = python2_mapping(module, name)
        if not mapped or mapped == (module, name):
            return raw
        other = self._classify_one(*mapped)
        # the mapped name is what protocols 0-2 import; the raw name only counts when worse
        return raw if raw.status == DANGEROUS and other.status != DANGEROUS else other

    @staticmethod
    def _matches(entries: tuple[str, ...], full: str, module: str) -> bool:
        for e in entries:
            if e.endswith(".*"):
                base = e[:-2]
                if _under(module, base) or full == base or full.startswith(base + "."):
                    return True
            elif full == e:
                return True
        return False

    def _classify_one(self, module: str, name: str) -> Verdict:
        full = f"{module}.{name}"
        if self._matches(self.deny, full, module):
            return Verdict(DANGEROUS, "denied by the scan policy", full)
        if self._matches(self.allow, full, module):
            return Verdict(SAFE, "allowed by the scan policy", full)
        if full in _SAFE_EXACT:
            return Verdict(SAFE, "known-safe ML global", full)
        first = name.split(".", 1)[0]
        for mod, nm, reason in _DENY:
            if _under(module, mod) and (nm is None or nm == first):
                return Verdict(DANGEROUS, reason, full)
            if nm is None and full.startswith(mod + ".") and mod.startswith(module + "."):
                # "torch" + "serialization.load": a dotted name into a denied module
                return Verdict(DANGEROUS, reason, full)
        if any(_is_dunder(p) for p in name.split(".")):
            return Verdict(DANGEROUS, R_INTERNALS, full)
        parts = module.split(".")
        if len(parts) > 1 and parts[-1] == "__main__":
            return Verdict(DANGEROUS, R_MAIN, full)
        if len(parts) > 1 and any(_is_dunder(p) for p in parts):
            return Verdict(DANGEROUS, R_INTERNALS, full)
        if _pattern_safe(module, name):
            return Verdict(SAFE, "known-safe ML class", full)
        return Verdict(UNKNOWN, "not on the allowlist: needs an explicit trust decision", full)


DEFAULT = Allowlist()
