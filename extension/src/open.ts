// Opening notebooks scrolled to a cell: a source notebook at a block or problem, or a run's
// executed notebook at the block that failed.
import { IDocumentManager } from '@jupyterlab/docmanager';
import { NotebookPanel } from '@jupyterlab/notebook';
import { PathExt } from '@jupyterlab/coreutils';

export interface ICellTarget {
  /** A contents path (may carry a drive prefix such as `BlockbookRuns:`). */
  path: string;
  /** nbformat's cell id, preferred when the notebook has ids. */
  cellId?: string | null;
  /** 0-based index of the cell, used when there is no id or it is not found. */
  cellIndex?: number | null;
}

export async function openAtCell(
  docManager: IDocumentManager,
  target: ICellTarget
): Promise<NotebookPanel | undefined> {
  const widget = docManager.openOrReveal(target.path);
  if (!(widget instanceof NotebookPanel)) {
    return undefined;
  }
  await widget.context.ready;
  await widget.revealed;
  const notebook = widget.content;
  const index = cellIndex(widget, target);
  if (index !== null && index >= 0 && index < notebook.widgets.length) {
    notebook.activeCellIndex = index;
    notebook.deselectAll();
    await notebook.scrollToItem(index, 'center');
  }
  return widget;
}

function cellIndex(widget: NotebookPanel, target: ICellTarget): number | null {
  const cells = widget.content.widgets;
  if (target.cellId) {
    const found = cells.findIndex(cell => cell.model.id === target.cellId);
    if (found >= 0) {
      return found;
    }
  }
  return target.cellIndex ?? null;
}

/** A notebook of a pipeline as a contents path: `folder/notebook`. */
export function notebookPath(pipelinePath: string, notebook: string): string {
  return pipelinePath ? PathExt.join(pipelinePath, notebook) : notebook;
}
