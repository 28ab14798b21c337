"""engine/errors.py is the one home of every error class the engine raises."""
import ast
from pathlib import Path

import engine.errors as errors

ENGINE = Path(__file__).resolve().parents[2] / "engine"
ALLOWED_ELSEWHERE = {
    "Fail",  # clierrors.Fail: a click exception, the CLI's own exit path
    "OffloadSignal",  # sandbox: control flow (move an evaluation to a thread), never an error
    "StoodIn",  # standins: control flow (a stand-in ends an action TimedOut/Skipped), never an error
}


def _exception_classes(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
            if any(b.endswith(("Error", "Exception")) for b in bases) or node.name.endswith("Error"):
                out.append(node.name)
    return out


def test_every_error_class_of_the_engine_is_defined_in_engine_errors():
    elsewhere = [f"{path.relative_to(ENGINE.parent)}: {name}" for path in ENGINE.rglob("*.py")
                 if path.name != "errors.py"
                 for name in _exception_classes(ast.parse(path.read_text()))
                 if name not in ALLOWED_ELSEWHERE]
    assert elsewhere == []


def test_the_error_tree_in_the_docstring_names_every_class():
    defined = _exception_classes(ast.parse(Path(errors.__file__).read_text()))
    assert [name for name in defined if name not in errors.__doc__] == []
