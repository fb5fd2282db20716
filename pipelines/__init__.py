"""Blockbook's engine: headers, discovery, analysis, graph, CLI.

Never imports `kernel_magics`; the kernel side depends on this package, not the reverse.
"""

__version__ = "0.1.0"
