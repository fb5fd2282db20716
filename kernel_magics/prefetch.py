"""What a kernel waiting for another notebook imports meanwhile: the modules that loading its
inputs will need, so a hand-off does not pay for them (pandas: ~0.5 s) after the upstream block
is done.

Only modules go into `sys.modules`, as the load would put them there a moment later; nothing is
bound in the user's namespace, and only well-known libraries are imported early (never a user's
own module, whose import could have side effects the block does not expect yet).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterable, Mapping

from pipelines.rundir.artifacts import PARQUET, ArtifactStore, OutputManifest

log = logging.getLogger(__name__)

FRAME_MODULES = ("pandas", "pyarrow.parquet", "pyarrow.dataset", "pyarrow.pandas_compat")
"""What reading a stored DataFrame imports (`pd.read_parquet` with pyarrow)."""

_PICKLED_LIBRARIES = {
    "pandas": ("pandas",),
    "numpy": ("numpy",),
    "pyarrow": ("pyarrow",),
}
"""Top-level package of a pickled value's type -> what unpickling it imports; well-known
libraries only."""


def modules_for(manifests: Iterable[OutputManifest | None]) -> tuple[str, ...]:
    """The modules loading these outputs will import. An output not stored yet (None: its
    producer is still running) counts as a DataFrame, which is what flows between notebooks
    most; a stored one says what it is."""
    needed: dict[str, None] = {}
    for manifest in manifests:
        if manifest is None or manifest.format == PARQUET:
            needed.update(dict.fromkeys(FRAME_MODULES))
        else:
            package = manifest.type.partition(".")[0] if "." in manifest.type else ""
            needed.update(dict.fromkeys(_PICKLED_LIBRARIES.get(package, ())))
    return tuple(needed)


def prefetch_inputs(store: ArtifactStore, sources: Mapping[str, str]) -> tuple[str, ...]:
    """Import what loading `sources` (input name -> producing block) from `store` will need;
    returns the modules imported here."""
    try:
        manifests = [store.manifest(producer, name) for name, producer in sources.items()]
    except Exception as exc:  # a manifest being written, unreadable: the load will say
        log.debug("prefetch: manifests not read (%s); assuming DataFrames", exc)
        manifests = [None] * len(sources)
    return prefetch(modules_for(manifests) if sources else ())


def prefetch(modules: Iterable[str]) -> tuple[str, ...]:
    """Import `modules` not imported yet; returns those imported here.

    A failure is ignored and only logged at debug level: prefetching is an optimisation, and
    the real load imports the module again and raises the error properly, in the block that
    needs it.
    """
    imported: list[str] = []
    for name in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:
            log.debug("prefetch of %s failed (the load will raise it): %r", name, exc)
            continue
        imported.append(name)
    return tuple(imported)
