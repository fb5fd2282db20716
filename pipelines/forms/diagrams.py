"""Rendering a pipeline: text for people, JSON for tools, Mermaid and DOT for diagrams."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping

from pipelines.assembly.blocks import Block
from pipelines.assembly.pipeline import Pipeline
from pipelines.forms.json_forms import graph_json
from pipelines.forms.palette import has_colour, mermaid_class_def


def to_json(pipeline: Pipeline) -> str:
    return json.dumps(graph_json(pipeline), indent=2)


def to_text(pipeline: Pipeline) -> str:
    lines = [f"pipeline {pipeline.name}: {size(pipeline)}"]
    for position, block in enumerate(pipeline.blocks.values(), start=1):
        upstream = pipeline.upstream.get(block.name, ())
        lines.append(f"{position:>3}. {block.name}  [{block.header.kind}]  {block.location}")
        if upstream:
            lines.append(f"       after: {', '.join(upstream)}")
        if block.header.map is not None:
            lines.append(f"       maps over: {block.header.map} (one run per item)")
        if block.outputs:
            lines.append(f"       outputs: {', '.join(block.outputs)}")
        sources = pipeline.sources.get(block.name, {})
        free = [name for name in block.inputs if name not in sources]
        if sources:
            wired = ", ".join(f"{name} <- {src}" for name, src in sorted(sources.items()))
            lines.append(f"       reads: {wired}")
        if free:
            lines.append(f"       parameters/free: {', '.join(free)}")
    return "\n".join(lines)


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def size(pipeline: Pipeline) -> str:
    """`3 blocks in 2 notebooks`."""
    notebooks = {block.notebook for block in pipeline.blocks.values()}
    return f"{counted(len(pipeline.blocks), 'block')} in {counted(len(notebooks), 'notebook')}"


def to_mermaid(
    pipeline: Pipeline,
    *,
    statuses: Mapping[str, str] | None = None,
    highlight_notebook: str | None = None,
    stale: Collection[str] = (),
) -> str:
    """The graph as a Mermaid flowchart, one subgraph per notebook.

    `statuses` colours blocks by their last status (and adds it to the label);
    `highlight_notebook` draws that notebook's blocks with a thick border; `stale` blocks
    (code changed since that run) say `changed` and get a dashed border.
    """
    statuses = statuses or {}
    lines = ["flowchart TD"]
    for index, (notebook, blocks) in enumerate(_by_notebook(pipeline).items()):
        lines.append(f'  subgraph notebook_{index}["{_mermaid_text(notebook)}"]')
        for block in blocks:
            status = statuses.get(block.name)
            if block.name in stale:
                status = f"{status or 'never run'} · changed"
            label = f"{block.name}<br/><i>{status}</i>" if status else block.name
            lines.append(f'    b_{block.name}["{label}"]')
        lines.append("  end")
    for child, parent, label in _edges(pipeline):
        arrow = f'-- "{_mermaid_text(label)}" -->' if label else "-->"
        lines.append(f"  b_{parent} {arrow} b_{child}")
    used = sorted({status for status in statuses.values() if has_colour(status)})
    for status in used:
        lines.append(f"  {mermaid_class_def(status)}")
        members = sorted(
            name for name, s in statuses.items() if s == status and name in pipeline.blocks
        )
        lines.append(f"  class {','.join('b_' + name for name in members)} {status}")
    if highlight_notebook is not None:
        mine = [b.name for b in pipeline.blocks.values() if b.notebook == highlight_notebook]
        for name in mine:
            lines.append(f"  style b_{name} stroke-width:3px")
    for changed in sorted(set(stale) & set(pipeline.blocks)):
        lines.append(f"  style b_{changed} stroke-dasharray:5 3")
    return "\n".join(lines)


def to_dot(pipeline: Pipeline) -> str:
    lines = [f"digraph {_dot_text(pipeline.name)} {{", "  rankdir=TB;", "  node [shape=box];"]
    for index, (notebook, blocks) in enumerate(_by_notebook(pipeline).items()):
        lines.append(f"  subgraph cluster_{index} {{ label={_dot_text(notebook)};")
        lines += [f'    "{block.name}";' for block in blocks]
        lines.append("  }")
    for child, parent, label in _edges(pipeline):
        attributes = f" [label={_dot_text(label)}]" if label else ""
        lines.append(f'  "{parent}" -> "{child}"{attributes};')
    lines.append("}")
    return "\n".join(lines)


RENDERERS: dict[str, Callable[[Pipeline], str]] = {
    "text": to_text,
    "json": to_json,
    "mermaid": to_mermaid,
    "dot": to_dot,
}


def _by_notebook(pipeline: Pipeline) -> dict[str, list[Block]]:
    groups: dict[str, list[Block]] = {}
    for block in sorted(pipeline.blocks.values(), key=lambda b: b.sort_key):
        groups.setdefault(block.notebook, []).append(block)
    return groups


def _edges(pipeline: Pipeline) -> list[tuple[str, str, str]]:
    edges: list[tuple[str, str, str]] = []
    for child in pipeline.blocks:
        sources = pipeline.sources.get(child, {})
        for parent in pipeline.upstream.get(child, ()):
            carried = sorted(name for name, src in sources.items() if src == parent)
            edges.append((child, parent, ", ".join(carried)))
    return edges


def _mermaid_text(text: str) -> str:
    """Mermaid labels are quoted; a quote inside one is written as an entity."""
    return text.replace('"', "#quot;")


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
