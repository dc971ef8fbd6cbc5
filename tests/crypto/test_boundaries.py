"""``crypto`` depends only on the standard library and ``cryptography``, and reads no environment."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import crypto

PACKAGE_DIR = Path(crypto.__file__).parent
ALLOWED_THIRD_PARTY = {"cryptography"}


def _sources() -> list[Path]:
    sources = sorted(PACKAGE_DIR.rglob("*.py"))
    assert sources, "crypto package sources not found"
    return sources


def _imported_top_levels(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(), filename=str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_crypto_imports_only_stdlib_and_cryptography() -> None:
    for source in _sources():
        foreign = {
            name
            for name in _imported_top_levels(source)
            if name not in sys.stdlib_module_names and name not in ALLOWED_THIRD_PARTY
        }
        assert not foreign, f"{source.name} imports {sorted(foreign)}"


def test_crypto_never_reads_the_environment() -> None:
    for source in _sources():
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"environ", "getenv", "environb"}, (
                    f"{source.name} reads the environment"
                )
            if isinstance(node, ast.Name):
                assert node.id not in {"environ", "getenv"}, f"{source.name} reads the environment"


def test_public_api_is_exported() -> None:
    for name in crypto.__all__:
        assert hasattr(crypto, name), name
