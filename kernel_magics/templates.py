"""Block templates: `%block_new KIND SOURCE [NAME]` inserts a ready-to-edit block cell below.

    %block_new                      # list the templates
    %block_new loader csv           # a `%%block load_csv --kind loader` cell reading `csv_path`
    %block_new exporter sql trips   # a `%%block trips --kind exporter` cell

The templates themselves are plain data in `pipelines.assembly.templates`, which the REST server
lists too; this module is the magic. Each template is a complete block: a header, a body using
the usual library for the job, and an `@test`. It runs as inserted once the names it reads (its
parameters, such as `csv_path`) are set, by a plain cell, an upstream block or `pipeline.toml`
`[params]`.

Loads on its own with `%load_ext kernel_magics.templates`. Importing this module stays cheap: the
libraries the templates use are imported by the inserted cells, not here.
"""

from __future__ import annotations

import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from pipelines.assembly import templates as _templates
from pipelines.assembly.templates import TEMPLATES, USAGE, Template, TemplateNotFound, listing

__all__ = ["TEMPLATES", "USAGE", "Template", "TemplateMagics", "find_template", "listing"]


def find_template(words: list[str]) -> tuple[Template, str | None]:
    """The template and the optional block name that `%block_new` arguments ask for
    (`pipelines.assembly.templates.find_template`); a `UsageError` with a did-you-mean and the
    template list when nothing matches."""
    try:
        return _templates.find_template(words)
    except TemplateNotFound as exc:
        message = f"{exc.message}\n{exc.hint}" if exc.hint else exc.message
        raise UsageError(message) from None


@magics_class
class TemplateMagics(Magics):
    @line_magic
    def block_new(self, line: str) -> None:
        """Insert a new block cell from a template below this one.

            %block_new KIND [SOURCE] [NAME]

        Without arguments, lists the templates. NAME defaults to the template's own
        (`load_csv`, `export_sql`, ...).
        """
        words = line.split()
        if not words:
            sys.stdout.write(listing() + "\n")
            return
        template, name = find_template(words)
        if self.shell is None:  # a Magics instance made without a shell
            raise UsageError("%block_new needs an IPython shell to insert the cell into")
        # A frontend (JupyterLab, VS Code) turns this into a new cell below the current one.
        self.shell.set_next_input(template.render(name), replace=False)


def load_ipython_extension(shell: Any) -> None:
    shell.register_magics(TemplateMagics)
