"""Find code in a submission that tries to change how the tests run, as a hint for the reviewer.

Test cells run in a separate grader process (:mod:`torchsteps.nbgrader_plugins.trusted_execute`), so patching the check
helpers, ``torch``, ``numpy`` or ``builtins``, hooking IPython, objects that compare equal to anything,
or reading files can no longer change a grade; a static scan is defeated by renaming anyway. What is
left is a hint: :func:`find_tampering` looks for such code in the source (after IPython's own input
transformations, leaving everyday magics and ``!pip install`` alone) and :class:`FlagTampering` records
the findings, naming each cell as the student sees it, and flags the submission in the gradebook with an
automatic comment on the cell, for the formgrader; its grades are marked ``needs_manual_grade`` for a
look (the autograded score stands and counts).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor

from ..constants import FLAG_COMMENT_PREFIX as COMMENT_PREFIX
from ..constants import is_test_cell

__all__ = ["Finding", "find_tampering", "helper_names", "FlagTampering", "METADATA_KEY", "COMMENT_PREFIX",
           "describe_cell", "flag_text", "comment_cell"]

METADATA_KEY = "torchsteps"
PROTECTED_MODULES = {"torch", "numpy", "checks", "builtins", "sys", "IPython", "math", "random", "warnings", "unittest", "importlib", "os", "types"}
# The test helpers' module, copied beside each notebook by nbgrader autograde (from source/<assignment>/).
HELPERS_FILE = "checks.py"
SYS_HOOKS = {"settrace", "setprofile", "displayhook", "excepthook", "meta_path", "path_hooks", "modules", "path", "stdout", "stderr", "audit", "addaudithook"}
DYNAMIC_CODE = {"exec", "eval", "compile", "__import__", "globals", "vars", "setattr", "delattr"}
FILE_AND_PROCESS = {
    "os": {"system", "popen", "listdir", "scandir", "walk", "remove", "unlink", "rename", "replace", "chdir", "kill", "fork", "execv", "execve", "_exit", "open", "environ"},
    # pathlib and glob are how a notebook reads the data files an assignment ships: not flagged.
    "shutil": None, "subprocess": None, "socket": None, "ctypes": None, "urllib": None,
    "importlib": None, "inspect": None, "gc": None, "atexit": None, "signal": None,
}
TENSOR_BASES = {"Tensor", "ndarray"}
# Magics students use every day; flagging them sent honest notebooks to review (issue 10).
EVERYDAY_MAGICS = {"matplotlib", "timeit", "time", "pip", "conda", "load_ext", "autoreload", "precision", "pprint",
                   "who", "whos", "pwd", "history", "config", "reload_ext", "xmode", "prun", "memit"}
CODE_CELL_MAGICS = {"time", "timeit", "capture", "prun"}


@dataclass(frozen=True)
class Finding:
    """One suspicious construct: where (cell index, line) and what (a short, specific description)."""

    cell: int
    line: int
    what: str

    def __str__(self) -> str:
        return f"cell {self.cell}, line {self.line}: {self.what}"


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    if isinstance(node, ast.Call):
        return _root_name(node.func)
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Call):
        parts.append(_dotted(node.func) + "()")
    return ".".join(reversed(parts))


class _Visitor(ast.NodeVisitor):
    def __init__(self, cell: int, aliases: dict[str, str], check_names: frozenset[str]):
        self.cell = cell
        self.aliases = aliases  # local name -> module it stands for ("np" -> "numpy")
        self.check_names = check_names
        self.findings: list[Finding] = []

    def flag(self, node: ast.AST, what: str) -> None:
        self.findings.append(Finding(self.cell, getattr(node, "lineno", 0), what))

    def module_of(self, name: str | None) -> str | None:
        if name is None:
            return None
        return self.aliases.get(name, name if name in PROTECTED_MODULES else None)

    # imports: remember aliases, and flag names that shadow the check helpers
    def visit_Import(self, node):
        for alias in node.names:
            top = alias.name.split(".")[0]
            self.aliases[alias.asname or top] = top
            if top in FILE_AND_PROCESS and FILE_AND_PROCESS[top] is None:
                self.flag(node, f"imports {alias.name} (file, process or interpreter access)")
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        module = (node.module or "").split(".")[0]
        for alias in node.names:
            if module in FILE_AND_PROCESS and (FILE_AND_PROCESS[module] is None or alias.name in FILE_AND_PROCESS[module]):
                self.flag(node, f"imports {alias.name} from {node.module} (file, process or interpreter access)")
            if module == "checks" and alias.asname and alias.asname in self.check_names:
                self.flag(node, f"rebinds the test helper {alias.asname}")
        self.generic_visit(node)

    def _check_target(self, target: ast.AST, verb: str) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._check_target(element, verb)
            return
        if isinstance(target, ast.Name):
            if target.id in self.check_names:
                self.flag(target, f"{verb} the test helper {target.id}")
            elif target.id in ("__builtins__", "get_ipython"):
                self.flag(target, f"{verb} {target.id}")
            elif self.module_of(target.id) in ("torch", "numpy", "checks") and verb != "imports":
                self.flag(target, f"{verb} the name {target.id}, which the tests use for the {self.module_of(target.id)} module")
            return
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            module = self.module_of(_root_name(target))
            if module is not None:
                self.flag(target, f"{verb} {_dotted(target) if isinstance(target, ast.Attribute) else _root_name(target) + '[...]'} (changes the {module} module the tests rely on)")
            elif _root_name(target) in ("__builtins__",):
                self.flag(target, f"{verb} __builtins__")

    def visit_Assign(self, node):
        for target in node.targets:
            self._check_target(target, "assigns")
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._check_target(node.target, "changes")
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self._check_target(node.target, "assigns")
        self.generic_visit(node)

    def visit_Delete(self, node):
        for target in node.targets:
            self._check_target(target, "deletes")
        self.generic_visit(node)

    def visit_Global(self, node):
        for name in node.names:
            if name in self.check_names or self.module_of(name) in ("torch", "numpy", "checks"):
                self.flag(node, f"declares global {name} (can replace what the tests use)")
        self.generic_visit(node)

    def visit_FunctionDef(self, node):
        if node.name in self.check_names:
            self.flag(node, f"redefines the test helper {node.name}")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        if node.name in self.check_names:
            self.flag(node, f"redefines the test helper {node.name}")
        for base in node.bases:
            if isinstance(base, (ast.Attribute, ast.Name)) and (getattr(base, "attr", None) or getattr(base, "id", None)) in TENSOR_BASES:
                self.flag(node, f"class {node.name} subclasses {_dotted(base)} (a fake tensor or array)")
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in ("__eq__", "__ne__", "__torch_function__", "__array_function__", "__array_ufunc__", "__instancecheck__", "__bool__"):
                self.flag(item, f"class {node.name} defines {item.name} (objects that can pass any comparison)")
        self.generic_visit(node)

    def _magic(self, node) -> bool:
        """True for an everyday magic or shell command (what IPython makes of ``%matplotlib inline``,
        ``%timeit``, ``%%time``, ``!pip install``); the code inside a timing cell magic is still analysed."""
        func = node.func
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call)
                and isinstance(func.value.func, ast.Name) and func.value.func.id == "get_ipython" and not func.value.args):
            return False
        args = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None for a in node.args]
        if not args or args[0] is None:
            return False
        if func.attr == "run_line_magic" and args[0] in EVERYDAY_MAGICS:
            return True
        if func.attr == "run_cell_magic" and args[0] in CODE_CELL_MAGICS and len(args) == 3 and args[2] is not None:
            try:
                self.visit(ast.parse(_python_source(args[2])))
            except SyntaxError:
                pass
            return True
        if func.attr in ("system", "getoutput"):
            words = args[0].split()
            return bool(words) and (words[0] in ("pip", "pip3", "conda", "mamba", "nvidia-smi")
                                    or words[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]))
        return False

    def visit_Name(self, node):
        # get_ipython under another name reaches the same hooks (input transformers, events, the shell).
        if node.id == "get_ipython" and isinstance(node.ctx, ast.Load):
            self.flag(node, "uses get_ipython() (can change how IPython runs the cells)")

    def visit_Call(self, node):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else None
        if self._magic(node):
            return
        if name == "get_ipython" or (isinstance(func, ast.Attribute) and _root_name(func) == "get_ipython"):
            self.flag(node, "uses get_ipython() (can change how IPython runs the cells)")
            for arg in list(node.args) + [k.value for k in node.keywords]:
                self.visit(arg)
            return
        elif name in DYNAMIC_CODE:
            if name in ("setattr", "delattr") and node.args and self.module_of(_root_name(node.args[0])) is None:
                pass  # setattr on the student's own objects
            else:
                self.flag(node, f"calls {name}() (dynamic code can hide changes to the tests)")
        elif name == "open" and node.args:
            path = node.args[0]
            if not (isinstance(path, ast.Constant) and isinstance(path.value, str) and not path.value.startswith("/") and ".." not in path.value):
                self.flag(node, "opens a file outside the working folder, or a path computed at run time")
        elif isinstance(func, ast.Attribute):
            module = self.module_of(_root_name(func))
            if module == "sys" and func.attr in SYS_HOOKS:
                self.flag(node, f"calls sys.{func.attr} (changes the interpreter)")
            elif module in FILE_AND_PROCESS and FILE_AND_PROCESS[module] and func.attr in FILE_AND_PROCESS[module]:
                self.flag(node, f"calls {module}.{func.attr} (file or process access)")
        self.generic_visit(node)

    def visit_Attribute(self, node):
        # Reading sys.path and the like is harmless; writes are caught in _check_target.
        if node.attr in ("__class__", "__dict__", "__globals__", "__code__", "__closure__", "__subclasses__", "__builtins__", "__defaults__", "__kwdefaults__"):
            self.flag(node, f"uses {node.attr} (introspection that can reach and change the tests' objects)")
        self.generic_visit(node)


def _python_source(source: str) -> str:
    """The cell as IPython will run it: magics and shell escapes become ``get_ipython()`` calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def helper_names(helpers_file: str | Path) -> frozenset[str]:
    """The names the test helpers export: ``__all__`` of ``helpers_file`` (empty if it is missing or has none)."""
    try:
        return _exported_names(Path(helpers_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return frozenset()


@functools.lru_cache(maxsize=16)
def _exported_names(source: str) -> frozenset[str]:
    # Remembered by content: every notebook of a class has the same helpers file, and parsing it took
    # about 17 ms a notebook (a third of this preprocessor's time).
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return frozenset()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            try:
                return frozenset(ast.literal_eval(node.value))
            except ValueError:
                return frozenset()
    return frozenset()


def find_tampering(cells: list[tuple[int, str]], check_names: frozenset[str] = frozenset()) -> list[Finding]:
    """Findings in the given ``(cell index, source)`` pairs, analysed in order (imports carry over).

    ``check_names`` are the test helpers' names (:func:`helper_names`); rebinding one is flagged.
    """
    aliases: dict[str, str] = {}
    findings: list[Finding] = []
    for index, source in cells:
        try:
            tree = ast.parse(_python_source(source))
        except SyntaxError:
            continue  # code that does not parse cannot run either; its tests fail on their own
        visitor = _Visitor(index, aliases, check_names)
        visitor.visit(tree)
        findings.extend(visitor.findings)
    return findings


class FlagTampering(NbGraderPreprocessor):
    """Autograde preprocessor: a hint for the reviewer about code that tries to change how tests run.

    Test cells run in the grader process (:mod:`torchsteps.nbgrader_plugins.trusted_execute`), so nothing
    found here can change a grade. Student cells are the code cells that nbgrader does not restore from
    the source: answer cells, unlocked demo cells and any cell the student added. Runs after
    ``SaveAutoGrades``.

    What reaches the formgrader (the gradebook): the submitted notebook is ``flagged`` (nbgrader's own
    flag, the star in the formgrader), its grades need a manual grade (the autograded score stays), and
    each finding is an automatic comment (``Comment.auto_comment``) on the answer or task cell it belongs
    to, naming the cell as the student sees it (its position and the heading above it, see
    :func:`describe_cell`) and starting with :data:`COMMENT_PREFIX`.
    """

    def preprocess(self, nb, resources):
        cells = [
            (i, cell.source)
            for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and not is_test_cell(cell) and not utils.is_locked(cell)
        ]
        folder = resources.get("metadata", {}).get("path") or "."
        findings = find_tampering(cells, helper_names(Path(folder) / HELPERS_FILE))
        # Named as the student sees the cell (its position and the heading above it).
        nb.metadata.setdefault(METADATA_KEY, {})["tamper"] = [f"{describe_cell(nb, f.cell)}, line {f.line}: {f.what}" for f in findings]
        if findings:
            self.log.warning("Possible tampering (a hint for the reviewer): %s", "; ".join(map(str, findings)))
            self._mark_for_review(nb, resources, findings)
        return nb, resources

    def _mark_for_review(self, nb, resources, findings: list[Finding]) -> None:
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            try:
                notebook = gb.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
            except MissingEntry:
                return
            for grade in notebook.grades:
                # A cell the instructor already graded by hand stays closed (SaveAutoGradesKeepingManual).
                if grade.manual_score is None:
                    grade.needs_manual_grade = True
            notebook.flagged = True
            comments: dict[str, list[str]] = {}
            for finding in findings:
                target = comment_cell(nb, finding.cell)
                if target is not None:
                    comments.setdefault(target, []).append(flag_text(nb, finding))
            for grade_id, texts in comments.items():
                try:
                    comment = gb.find_comment(grade_id, info["notebook"], info["assignment"], info["student"])
                except MissingEntry:
                    continue
                kept = [line for line in (comment.auto_comment or "").splitlines() if not line.startswith(COMMENT_PREFIX)]
                comment.auto_comment = "\n".join(kept + texts)
            gb.db.commit()


def _heading(cell) -> str | None:
    for line in cell.source.splitlines():
        if line.lstrip().startswith("#"):
            return line.strip().lstrip("#").strip()
    return None


def describe_cell(nb, index: int) -> str:
    """A cell as the student sees it: ``cell 8 (under "Exercise 2: Fahrenheit")``.

    The position counts from 1 in the notebook as submitted; the heading is the last Markdown heading
    above the cell (none is named when there is no heading above).
    """
    heading = None
    for cell in nb.cells[:index]:
        if cell.cell_type == "markdown":
            heading = _heading(cell) or heading
    where = f"cell {index + 1}"
    return f'{where} (under "{heading}")' if heading else where


def flag_text(nb, finding: Finding) -> str:
    """The comment line for one finding, e.g. ``Flagged for review: cell 4 (under "..."), line 2: assigns checks.check_tensor``."""
    return f"{COMMENT_PREFIX}{describe_cell(nb, finding.cell)}, line {finding.line}: {finding.what}"


def comment_cell(nb, index: int) -> str | None:
    """grade_id of the cell whose comment carries a finding in cell ``index``.

    nbgrader keeps comments on answer (solution) and task cells only: the cell itself when it is one,
    else the nearest one above (a cell the student added under an answer), else the nearest below.
    """
    def commentable(i):
        meta = nb.cells[i].metadata.get("nbgrader", {})
        return meta.get("grade_id") if (meta.get("solution") or meta.get("task")) else None

    for i in [index, *range(index - 1, -1, -1), *range(index + 1, len(nb.cells))]:
        if 0 <= i < len(nb.cells) and commentable(i):
            return commentable(i)
    return None
