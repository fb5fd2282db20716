"""The `blockbook` command: parsing arguments and presenting results, nothing else.

May import: `pipelines.api` (everything it does goes through `Project`), `pipelines.forms` and
the foundation modules, plus the types it presents.

Importing this package sets up the process for a short life: the `blockbook` script and
`python -m pipelines` (so every runner a launcher starts) import it before anything else of
Blockbook's. Kernels and the Jupyter server never import it (`tests/test_architecture.py`:
`server` may not import `cli`), so they keep the interpreter's behaviour.
"""

import atexit
import gc
import sys

# Where JupyterLab is installed, jsonschema (imported by nbformat and papermill, so by every
# Blockbook command and runner process) compiles rfc3987_syntax's ~35 Lark grammars at import:
# ~0.9 s idle, ~2 s under load, before any command starts (python-jsonschema/jsonschema#1428).
# They check only the `iri` and `iri-reference` formats, which neither nbformat's schemas nor
# anything else these processes validate use; without the module jsonschema leaves those two
# formats unchecked. The Jupyter server keeps them: jupyter_events validates with them there.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

# A run imports ~1,100 modules (~200,000 objects that live as long as the process). CPython's
# default full collection every 10 middle ones traverses all of them a few times during those
# imports (~0.09 s of a runner's ~0.8 s before its first kernel); ten times rarer, they cost
# next to nothing, and a long-lived scheduler still collects its cyclic garbage. At exit the
# interpreter's final collections would traverse them all again (~0.15 s) to free memory the
# OS takes back anyway: frozen, they are left alone (atexit callbacks still run; the store and
# the files a command writes are closed before it exits).
_young, _middle, _ = gc.get_threshold()
gc.set_threshold(_young, _middle, 100)
atexit.register(gc.freeze)
