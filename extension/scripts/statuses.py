"""Write the TypeScript form of `pipelines/status.py`, the one status vocabulary.

The frontend must not copy status strings by hand, so its build runs this first. The module is
loaded from its file, not imported as `pipelines.status`, because the build runs in an isolated
environment where Blockbook's dependencies (imported by `pipelines/__init__.py`) may be missing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

STATUS_MODULE = Path(__file__).resolve().parents[2] / "pipelines" / "status.py"


def load_status_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("blockbook_status", STATUS_MODULE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and enums look their module up by name
    spec.loader.exec_module(module)
    return module


def union_type(name: str, members: list[str]) -> str:
    values = " | ".join(f"'{m}'" for m in members)
    return f"export type {name} = {values};\n"


def constant_list(name: str, type_name: str, members: list[str]) -> str:
    values = ", ".join(f"'{m}'" for m in members)
    return f"export const {name}: ReadonlyArray<{type_name}> = [{values}];\n"


def render(module) -> str:  # type: ignore[no-untyped-def]
    out = [
        "// Generated from pipelines/status.py by scripts/statuses.py at build time. Do not edit.\n"
    ]
    for enum_name, all_name in (
        ("RunStatus", "RUN_STATUSES"),
        ("BlockStatus", "BLOCK_STATUSES"),
        ("Trigger", "TRIGGERS"),
    ):
        members = [member.value for member in getattr(module, enum_name)]
        out.append(union_type(enum_name, members))
        out.append(constant_list(all_name, enum_name, members))
    for constant, type_name in (("RUN_TERMINAL", "RunStatus"), ("BLOCK_TERMINAL", "BlockStatus")):
        members = sorted(member.value for member in getattr(module, constant))
        out.append(constant_list(constant, type_name, members))
    return "".join(out)


def main() -> None:
    target = Path(sys.argv[1])
    text = render(load_status_module())
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


if __name__ == "__main__":
    main()
