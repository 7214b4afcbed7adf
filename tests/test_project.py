"""The project's promises outside the code: the README's example runs, CI calls the README's test
command, and the layout matches the architecture."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_example_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "README has no python example"
    done = subprocess.run([sys.executable, "-c", blocks[0]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "lightning" in done.stdout


def test_readme_opens_with_the_two_commands():
    head = (ROOT / "README.md").read_text()[:1200]
    assert "make up" in head and "make test" in head


def test_readme_requests_run_as_written():
    """Every curl example names files a clone has and sends JSON with no placeholder left in it."""
    readme = (ROOT / "README.md").read_text().replace("\\\n", " ")
    curls = [line for line in readme.splitlines() if line.startswith("curl ")]
    assert len(curls) >= 10, "README lost its request examples"
    for line in curls:
        for path in re.findall(r"=@(\S+)", line):
            assert (ROOT / path).is_file(), f"{line}: {path} is not in the repository"
        for body in re.findall(r"-d '(.*?)'", line):
            assert "..." not in body, f"{line}: a placeholder in the body"
            json.loads(body)


def test_ci_runs_make_test_only():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1].strip() == "make test"
    assert "set -euo pipefail" in ci


def test_layout_matches_architecture():
    for path in (
        "pyproject.toml",
        "Makefile",
        "README.md",
        "shared_attention",
        "kernels",
        "benchmarks",
        "tests",
    ):
        assert (ROOT / path).exists(), path


def _imports(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` (dotted name) -> the top-level packages and suite modules it imports."""
    import ast

    found = {}
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        package_parts = list(parts[:-1])  # what a relative import of level 1 names
        module = ".".join(package_parts if parts[-1] == "__init__" else parts)
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    parent = package_parts[: len(package_parts) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
        found[module] = names
    return found


def test_imports_go_one_way():
    """ARCHITECTURE.md's rules: the core knows no domain, the registry code is neutral, services never
    import pipelines, no domain imports another, benchmarks do not reach into private modules."""
    domains = ("genomics", "pointer", "recommendation", "vision")
    rules = {
        "shared_attention": ("services", "pipelines", "modelstore", "ray", "mlflow"),
        "kernels": ("services", "pipelines", "modelstore", "shared_attention", "ray", "mlflow"),
        "modelstore": ("services", "pipelines", "ray"),
        "services": ("pipelines", "benchmarks"),
        "pipelines": ("benchmarks",),
    }
    broken = []
    for package, banned in rules.items():
        for module, names in _imports(package).items():
            broken += [f"{module} imports {n}" for n in names if n.split(".")[0] in banned]
    for domain in domains:
        for layer in ("services", "pipelines"):
            for module, names in _imports(f"{layer}.{domain}").items() if (ROOT / layer / domain).is_dir() else ():
                others = [n for n in names for d in domains if d != domain and n.startswith(f"{layer}.{d}")]
                broken += [f"{module} imports {n}" for n in others]
    for module, names in _imports("benchmarks").items():
        ours = [
            n
            for n in names
            if n.split(".")[0] in ("shared_attention", "kernels", "modelstore", "services", "pipelines")
        ]
        broken += [f"{module} imports {n}" for n in ours if any(part.startswith("_") for part in n.split("."))]
    assert not broken, "\n".join(broken)


def test_no_import_circles():
    """No two of the suite's modules import each other, directly or around a longer circle (lazy imports
    inside functions count: they only hide a circle)."""
    graph = {}
    for package in ("shared_attention", "kernels", "modelstore", "services", "pipelines", "benchmarks"):
        graph.update(_imports(package))
    modules = set(graph)
    edges = {m: {n for n in names if n in modules and n != m} for m, names in graph.items()}
    circles, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(edges[module]):
            if target in path:
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(edges):
        if module not in done:
            visit(module, [module])
    assert not circles, "\n".join(sorted(set(circles)))


def test_core_and_kernel_tests_need_no_ray_mlflow_or_biopython():
    """The GPU machine has torch and Triton only: collecting tests/shared_attention and tests/kernels
    (which imports every test module and what it imports) must not touch Ray, MLflow or Biopython."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('ray', 'mlflow', 'Bio'):\n"
        "            raise ImportError(f'{name} is not on the GPU machine')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import pytest\n"
        "args = ['--collect-only', '-q', '-p', 'no:cacheprovider', 'tests/shared_attention', 'tests/kernels']\n"
        "sys.exit(pytest.main(args))\n"
    )
    done = subprocess.run([sys.executable, "-c", blocker], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
