"""The `blockbook` command: parsing arguments and presenting results, nothing else.

May import: `pipelines.api` (everything it does goes through `Project`), `pipelines.forms` and
the foundation modules, plus the types it presents.
"""

import sys

# Where JupyterLab is installed, jsonschema (imported by nbformat, so by every Blockbook
# command and runner process) compiles rfc3987_syntax's ~35 Lark grammars at import: 2-5 s
# before any command starts (python-jsonschema/jsonschema#1428). They check only the `iri`
# formats, which no notebook schema uses; Blockbook's own processes go without them. Kernels and
# the Jupyter server never import this package, so they are unaffected.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
