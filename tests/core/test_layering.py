"""Shared code (ttproject) depends on no app: the apps plug into it through settings and URLconfs."""

import ast

from tests.conftest import ROOT

APPS = {"fleet", "agent", "localvm"}
# The role URLconfs compose the apps' routes and the launcher starts them: both exist to name the apps.
COMPOSERS = ("ttproject/urls/", "ttproject/cli")


def _imported_modules(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_shared_code_imports_no_app():
    offenders = []
    for path in sorted((ROOT / "ttproject").rglob("*.py")):
        where = str(path.relative_to(ROOT))
        if where.startswith(COMPOSERS) or "migrations" in path.parts:
            continue
        for module in _imported_modules(ast.parse(path.read_text())):
            if module.split(".")[0] in APPS:
                offenders.append(f"{where}: {module}")
    assert not offenders
