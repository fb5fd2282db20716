// Cell badges: each `%%block` cell of an open notebook of a pipeline shows the block's name
// and its latest status and duration, from the newest run or an interactive execution.
import { CodeCell } from '@jupyterlab/cells';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

import { BlockbookApi, pipelineKey } from './api';
import { formatDuration } from './format';
import { LiveUpdates } from './live';
import { PipelineListing } from './model';
import { ILatestBlock } from './types';

const HEADER = /^%%block\s+([A-Za-z_][A-Za-z0-9_]*)/;
const BADGE_CLASS = 'bb-cell-badge';

/** The block a cell holds, from its first line; null for other cells. */
export function blockName(source: string): string | null {
  return HEADER.exec(source)?.[1] ?? null;
}

export class CellBadges {
  constructor(
    private readonly api: BlockbookApi,
    private readonly listing: PipelineListing,
    live: LiveUpdates,
    tracker: INotebookTracker
  ) {
    tracker.widgetAdded.connect((_, panel) => this._track(panel));
    tracker.forEach(panel => this._track(panel));
    NotebookActions.executed.connect((_, { notebook, cell }) => {
      if (cell instanceof CodeCell && blockName(cell.model.sharedModel.getSource())) {
        const panel = this._panels.find(p => p.content === notebook);
        if (panel) {
          void this.refresh(panel);
        }
      }
    });
    live.changed.connect((_, change) => {
      if (change.kind !== 'pipelines') {
        this._panels
          .filter(panel => this.listing.forNotebook(panel.context.path)?.pipeline === change.pipeline)
          .forEach(panel => void this.refresh(panel));
      }
    });
  }

  async refresh(panel: NotebookPanel): Promise<void> {
    await this.listing.ready();
    const pipeline = this.listing.forNotebook(panel.context.path);
    const latest = pipeline ? (await this.api.latest(pipelineKey(pipeline))).blocks : {};
    this._latest.set(panel, latest);
    this._draw(panel);
  }

  private _track(panel: NotebookPanel): void {
    this._panels.push(panel);
    panel.disposed.connect(() => {
      this._panels = this._panels.filter(p => p !== panel);
      this._latest.delete(panel);
    });
    void panel.context.ready.then(() => this.refresh(panel));
    // Cells are created lazily (windowed notebooks) and edited: draw again when they change.
    panel.content.modelContentChanged.connect(() => this._draw(panel));
    panel.content.cellInViewportChanged.connect(() => this._draw(panel));
  }

  private _draw(panel: NotebookPanel): void {
    const latest = this._latest.get(panel) ?? {};
    for (const cell of panel.content.widgets) {
      const name = cell.model.type === 'code' ? blockName(cell.model.sharedModel.getSource()) : null;
      let badge = cell.node.querySelector<HTMLElement>(`:scope > .${BADGE_CLASS}`);
      if (!name) {
        badge?.remove();
        continue;
      }
      if (!badge) {
        badge = document.createElement('div');
        badge.className = BADGE_CLASS;
        cell.node.prepend(badge);
      }
      paint(badge, name, latest[name]);
    }
  }

  private _panels: NotebookPanel[] = [];
  private readonly _latest = new Map<NotebookPanel, Record<string, ILatestBlock>>();
}

function paint(badge: HTMLElement, name: string, state: ILatestBlock | undefined): void {
  const status = state?.status ?? 'none';
  badge.dataset.block = name;
  badge.dataset.status = status;
  badge.className = `${BADGE_CLASS} bb-status-${status}`;
  const where = state?.source === 'run' ? `run ${state.run_id}` : 'run in this notebook';
  const text = state
    ? `${name} · ${status.replace('_', ' ')}${state.duration !== null ? ` · ${formatDuration(state.duration)}` : ''}`
    : `${name} · not run yet`;
  if (badge.textContent !== text) {
    badge.textContent = text;
  }
  badge.title = state ? `${status} (${where})${state.error ? `\n${state.error}` : ''}` : 'never run';
}
