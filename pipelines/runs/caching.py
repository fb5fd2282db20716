"""Incremental runs: which blocks a run takes from an earlier run instead of running them.

A block's fingerprint is what its result depends on, each part hashed: its code (header and
body, normalised: `pipelines.assembly.code_hash`), the stored outputs of other blocks it reads,
the parameters it reads and the `pipeline.toml` settings that reach its kernel. A run decides
before it starts, top-down in the global order: a block is `cached` when its own parts (code,
parameters, settings) equal those of its last successful run AND every upstream block is
cached too, so its inputs are the very artifacts it read then (checked by their hashes). A
block below one that runs always runs: whether its inputs change is only known once they are
written, and deciding before the run keeps the decision deterministic and explainable.

Exporters and sensors always run (their point is a side effect), conditions are decided again,
and `--cache never` opts a block out. What was compared is kept with each block run, so a block
that runs says why (`code changed`, `input trips from load changed`, `parameter day changed`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.assembly.code_hash import block_code_hash
from pipelines.assembly.header import BlockKind, BlockName, CachePolicy
from pipelines.assembly.pipeline import Pipeline
from pipelines.params import ParamValue, is_secret_param, json_value
from pipelines.status import Trigger

FINGERPRINT_VERSION = 1
"""Stored with each fingerprint; a stored one of another version is never matched."""

CACHED_TRIGGERS = frozenset({Trigger.MANUAL})
"""Runs that reuse unchanged blocks by default: people's runs (`blockbook run`, `%pipeline`,
JupyterLab). A schedule, a backfill or an API call exists to bring in fresh data from outside,
which a loader's unchanged code says nothing about."""


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What a block's result depends on, each part a sha256 (hex)."""

    code: str
    params: Mapping[str, str] = field(default_factory=dict)
    """Parameter read -> hash of its value."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """Setting that reaches the block (`kernel`) -> hash of its value."""
    inputs: Mapping[str, str] = field(default_factory=dict)
    """`producer.output` -> sha256 of the stored output the block read."""

    def to_json(self, reason: str = "") -> dict[str, Any]:
        return {
            "version": FINGERPRINT_VERSION,
            "code": self.code,
            "params": dict(self.params),
            "settings": dict(self.settings),
            "inputs": dict(self.inputs),
            "reason": reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fingerprint | None:
        """The stored fingerprint, or None when it is of another version or malformed."""
        if data.get("version") != FINGERPRINT_VERSION or not isinstance(data.get("code"), str):
            return None
        parts = [data.get(key, {}) for key in ("params", "settings", "inputs")]
        if not all(isinstance(part, dict) for part in parts):
            return None
        return cls(data["code"], *parts)


@dataclass(frozen=True, slots=True)
class Previous:
    """A block's last successful result: where its outputs are, and what it depended on."""

    run_id: str
    """The run that executed the block; a cached block names it in `reused_from`."""
    run_dir: str
    """A run folder that holds the outputs (the executing run's, or a later run's links)."""
    fingerprint: Fingerprint


@dataclass(frozen=True, slots=True)
class Decision:
    block: str
    cached_from: Previous | None
    """The result this run reuses; None when the block runs."""
    reason: str
    """`reused from run R: nothing changed`, or why the block runs."""


@dataclass(frozen=True, slots=True)
class CachePolicyOfRun:
    """Which blocks of a run may be cached, from the run's options."""

    enabled: bool
    forced: frozenset[str] = frozenset()
    """Blocks `--force BLOCK` re-runs."""
    disabled_because: str = ""
    """Why caching is off for the whole run, when it is."""


StoredHash = Callable[[str, str, str], str | None]
"""(run folder, block, output) -> sha256 of that stored output there, or None if not stored."""


def run_policy(
    trigger: Trigger,
    *,
    force_all: bool,
    force_blocks: Collection[str],
    selective: str,
    cache: bool | None,
) -> CachePolicyOfRun:
    """Whether a run caches: on by default for manual runs (`cache` None), off for scheduled,
    backfill and API runs; `cache` True or False overrides that. `--force` turns it off;
    `--only` and `--resume` already say exactly what runs (`selective` says which, or is "")."""
    if force_all:
        return CachePolicyOfRun(False, disabled_because="--force")
    if selective:
        return CachePolicyOfRun(False, disabled_because=selective)
    enabled = trigger in CACHED_TRIGGERS if cache is None else cache
    if not enabled:
        why = (
            "caching is off for this run"
            if cache is False
            else f"caching is off for {trigger} runs"
        )
        return CachePolicyOfRun(False, disabled_because=why)
    return CachePolicyOfRun(True, forced=frozenset(force_blocks))


def value_hash(name: str, value: ParamValue) -> str:
    """The hash of a parameter's value. Secret values are stored in no form that gives them
    away cheaply: scrypt, salted with the name, makes guessing a weak password from the run
    store slow."""
    text = f"{type(value).__name__}:{json.dumps(json_value(value), sort_keys=True)}"
    if is_secret_param(name, value):
        salt = f"blockbook-param:{name}".encode()
        return hashlib.scrypt(text.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32).hex()
    return _sha256(text)


def own_fingerprint(
    pipeline: Pipeline, name: BlockName, params: Mapping[str, ParamValue], kernel: str
) -> Fingerprint:
    """The block's parts known before it runs: code, parameters read, settings (not inputs).

    A parameter is read when the block reads a free name (static analysis: not bound in the
    block, not produced by another block) that the run's parameters (`[params]`, `-p`) bind:
    papermill binds each of them in every kernel of the run.
    """
    block = pipeline.blocks[name]
    produced = pipeline.sources.get(name, {})
    read = sorted(n for n in block.inputs if n in params and n not in produced)
    return Fingerprint(
        code=block_code_hash(block.source),
        params={n: value_hash(n, params[n]) for n in read},
        settings={"kernel": _sha256(kernel)},
    )


def input_hashes(
    pipeline: Pipeline, name: BlockName, folders: Mapping[str, str], stored_hash: StoredHash
) -> dict[str, str]:
    """`producer.output` -> hash of each stored output the block reads, found in the folder
    `folders[producer]`; outputs not stored there are left out."""
    hashes: dict[str, str] = {}
    for output, producer in sorted(pipeline.sources.get(name, {}).items()):
        folder = folders.get(producer)
        found = stored_hash(folder, producer, output) if folder is not None else None
        if found is not None:
            hashes[f"{producer}.{output}"] = found
    return hashes


def changes(previous: Fingerprint, current: Fingerprint, *, inputs: bool = True) -> list[str]:
    """What differs between two fingerprints, in words; [] when nothing does."""
    found: list[str] = []
    if previous.code != current.code:
        found.append("code changed")
    found += _part_changes("parameter", previous.params, current.params)
    found += _part_changes("setting", previous.settings, current.settings)
    if inputs:
        for key in sorted(set(previous.inputs) | set(current.inputs)):
            if previous.inputs.get(key) != current.inputs.get(key):
                producer, _, output = key.partition(".")
                found.append(f"input `{output}` from `{producer}` changed")
    return found


def decide(
    pipeline: Pipeline,
    candidates: Collection[str],
    policy: CachePolicyOfRun,
    own: Mapping[str, Fingerprint],
    previous: Mapping[str, Previous],
    stored: Mapping[str, Collection[str]],
    stored_hash: StoredHash,
) -> dict[str, Decision]:
    """Whether each block of `candidates` (the blocks this run would run) is cached, top-down in
    the global order. `stored[block]` names the outputs this run stores of it: a cached block
    must have every one of them in its earlier run."""
    decisions: dict[str, Decision] = {}
    cached: dict[str, Previous] = {}
    for name in pipeline.order:
        if name not in candidates:
            continue
        reasons = _why_it_runs(pipeline, name, policy)
        before = previous.get(name)
        if not reasons and before is None:
            reasons = ["no earlier successful run to reuse"]
        if not reasons and before is not None:
            reasons = changes(before.fingerprint, own[name], inputs=False)
            running = [u for u in pipeline.upstream.get(name, ()) if u not in cached]
            reasons += [f"upstream `{u}` runs" for u in running]
            if not running:
                folders: dict[str, str] = {
                    u: cached[u].run_dir for u in pipeline.upstream.get(name, ())
                }
                now_read = input_hashes(pipeline, name, folders, stored_hash)
                reasons += changes(
                    Fingerprint("", inputs=before.fingerprint.inputs),
                    Fingerprint("", inputs=now_read),
                )
            reasons += [
                f"output `{output}` is not stored in run {before.run_id}"
                for output in sorted(stored.get(name, ()))
                if stored_hash(before.run_dir, name, output) is None
            ]
        if reasons or before is None:
            decisions[name] = Decision(name, None, "; ".join(reasons))
        else:
            cached[name] = before
            decisions[name] = Decision(
                name, before, f"reused from run {before.run_id}: nothing changed"
            )
    return decisions


def _why_it_runs(pipeline: Pipeline, name: str, policy: CachePolicyOfRun) -> list[str]:
    """Why a block runs whatever changed, if it does."""
    header = pipeline.blocks[BlockName(name)].header
    if not policy.enabled:
        return [policy.disabled_because]
    if name in policy.forced:
        return [f"--force {name}"]
    if header.cache is CachePolicy.NEVER:
        return ["--cache never"]
    if header.map is not None:
        return ["a mapped block (--map) always runs"]
    if header.kind in (BlockKind.EXPORTER, BlockKind.SENSOR):
        return [f"{'an' if header.kind is BlockKind.EXPORTER else 'a'} {header.kind} always runs"]
    if header.kind is BlockKind.CONDITION:
        return ["a condition is decided again each run"]
    if header.skip:
        return ["--skip"]
    return []


def _part_changes(what: str, before: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    found = []
    for key in sorted(set(before) | set(now)):
        if key not in before:
            found.append(f"{what} `{key}` is new")
        elif key not in now:
            found.append(f"{what} `{key}` is no longer read")
        elif before[key] != now[key]:
            found.append(f"{what} `{key}` changed")
    return found


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
