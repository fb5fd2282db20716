// Cell badges: each `%%block` cell of an open notebook of a pipeline shows the block's name
// and its latest status and duration, from the newest run or an interactive execution.
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

import { BlockbookApi, pipelineKey } from './api';
import { DRIVE_NAME } from './drive';
import { formatDuration } from './format';
import { blockName } from './header';
import { LiveUpdates } from './live';
import { BURST_MS } from './liveview';
import { PipelineListing } from './model';
import { ILatestBlock, IRunWithBlocks } from './types';

const BADGE_CLASS = 'bb-cell-badge';

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
      if (cell.model.type === 'code' && blockName(cell.model.sharedModel.getSource())) {
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
          .forEach(panel => this._refreshSoon(panel));
      }
    });
  }

  async refresh(panel: NotebookPanel): Promise<void> {
    const runId = executedRunId(panel.context.path);
    let latest: Record<string, ILatestBlock> = {};
    let stale: string[] = [];
    if (runId) {
      latest = runBlocks(await this.api.run(runId));
    } else {
      await this.listing.ready();
      const pipeline = this.listing.forNotebook(panel.context.path);
      const answer = pipeline ? await this.api.latest(pipelineKey(pipeline)) : null;
      latest = answer?.blocks ?? {};
      stale = answer?.stale ?? [];
    }
    this._latest.set(panel, latest);
    this._stale.set(panel, new Set(stale));
    this._draw(panel);
  }

  /** A run's block events come in bursts: one fetch per panel serves a burst. */
  private _refreshSoon(panel: NotebookPanel): void {
    if (!this._soon.has(panel)) {
      this._soon.set(
        panel,
        window.setTimeout(() => {
          this._soon.delete(panel);
          void this.refresh(panel);
        }, BURST_MS)
      );
    }
  }

  private _track(panel: NotebookPanel): void {
    this._panels.push(panel);
    panel.disposed.connect(() => {
      this._panels = this._panels.filter(p => p !== panel);
      this._latest.delete(panel);
      this._stale.delete(panel);
      window.clearTimeout(this._soon.get(panel));
      this._soon.delete(panel);
    });
    void panel.context.ready.then(() => this.refresh(panel));
    // Cells are created lazily (windowed notebooks) and edited: draw again when they change.
    panel.content.modelContentChanged.connect(() => this._draw(panel));
    // Staleness is judged on the saved notebook: ask again once it is saved.
    panel.context.fileChanged.connect(() => this._refreshSoon(panel));
    panel.content.cellInViewportChanged.connect(() => this._draw(panel));
  }

  private _draw(panel: NotebookPanel): void {
    const latest = this._latest.get(panel) ?? {};
    const stale = this._stale.get(panel) ?? new Set<string>();
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
      paint(badge, name, latest[name], stale.has(name));
    }
  }

  private _panels: NotebookPanel[] = [];
  private readonly _latest = new Map<NotebookPanel, Record<string, ILatestBlock>>();
  private readonly _stale = new Map<NotebookPanel, Set<string>>();
  private readonly _soon = new Map<NotebookPanel, number>();
}

/** An executed notebook of the runs drive names its run: `BlockbookRuns:RUN_ID/NAME.ipynb`. */
function executedRunId(path: string): string | null {
  const prefix = `${DRIVE_NAME}:`;
  return path.startsWith(prefix) ? path.slice(prefix.length).split('/')[0] : null;
}

/** In an executed notebook, a badge tells how its block went in that run. */
function runBlocks(run: IRunWithBlocks): Record<string, ILatestBlock> {
  return Object.fromEntries(
    run.blocks.map(block => [
      block.name,
      {
        status: block.status,
        duration: block.duration,
        started_at: block.started_at,
        ended_at: block.ended_at,
        error: block.error,
        source: 'run' as const,
        run_id: run.run_id
      }
    ])
  );
}

function paint(badge: HTMLElement, name: string, state: ILatestBlock | undefined, stale: boolean): void {
  const status = state?.status ?? 'none';
  badge.dataset.block = name;
  badge.dataset.status = status;
  if (stale) {
    badge.dataset.stale = 'true';
  } else {
    delete badge.dataset.stale;
  }
  badge.className = `${BADGE_CLASS} bb-Chip bb-status-${status}${stale ? ' bb-cell-badge--stale' : ''}`;
  const where = state?.source === 'run' ? `run ${state.run_id}` : 'run in this notebook';
  const text = state
    ? `${name} · ${status.replace('_', ' ')}${state.duration !== null ? ` · ${formatDuration(state.duration)}` : ''}${stale ? ' · changed' : ''}`
    : `${name} · not run yet`;
  if (badge.textContent !== text) {
    badge.textContent = text;
  }
  const changed = stale ? '\ncode changed since that run: the next run runs it again' : '';
  badge.title = state ? `${status} (${where})${changed}${state.error ? `\n${state.error}` : ''}` : 'never run';
}
