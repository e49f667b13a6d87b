"""The library's imports run one way: lower layers never import higher ones (STYLE.md)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "synthrec"

# Lowest first; a module may import its own layer and the layers below it.
LAYERS = [
    {"errors", "config"},
    {"schema", "filestore", "storage", "local_s3", "atomic"},
    {"data", "encoding", "model_dir", "privacy", "registry"},
    {"gan", "recommender", "evaluate", "artifacts", "sequences"},
    {"generators"},  # one interface over the row GAN and the sequence model
    {"distributed"},
    {"serving", "pipeline", "refresh"},
    {"cli", "jobs", "__init__", "__main__"},
]
# the one upward edge allowed: the job submitter lists the job entrypoints it can submit (their
# names and config classes live with each entrypoint module, `python -m synthrec.jobs.NAME`)
ALLOWED = {("distributed/jobs.py", "jobs")}
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    return module.split(".")[1] if module.startswith("synthrec.") else module


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "synthrec":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("synthrec."):
                found.add(_top(node.module))
        elif isinstance(node, ast.Import):
            found |= {_top(a.name) for a in node.names if a.name.startswith("synthrec.")}
    return found


def test_layers_every_module_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert tops <= set(LAYER), sorted(tops - set(LAYER))


def test_layers_imports_run_one_way():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = LAYER[path.relative_to(PACKAGE).parts[0].removesuffix(".py")]
        for name in _imports(path):
            rel = str(path.relative_to(PACKAGE))
            if LAYER.get(name, -1) > own and (rel, name) not in ALLOWED:
                upward.append(f"{path.relative_to(PACKAGE)} imports synthrec.{name}")
    assert not upward, upward
