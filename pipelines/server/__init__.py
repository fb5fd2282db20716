"""The jupyter_server extension: thin REST handlers and events over `pipelines.api.Project`.

May import: `pipelines.api`, `pipelines.forms` and the foundation modules.

Enabled by `jupyter-config/jupyter_server_config.d/blockbook.json`, which installing the package
puts in `etc/jupyter/jupyter_server_config.d/`; docs/server.md describes the API.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """How jupyter_server finds the extension (the enable file names this package)."""
    # Imported here for cost: jupyter_server and tornado only load when a server asks.
    from pipelines.server.extension import BlockbookExtension

    return [{"module": "pipelines.server.extension", "app": BlockbookExtension}]
