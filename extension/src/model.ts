// The pipelines under the server root, fetched once and refreshed on change: one listing for
// the panel, the notebook badges and the commands that act on "this notebook's pipeline".
import { PathExt } from '@jupyterlab/coreutils';
import { ISignal, Signal } from '@lumino/signaling';

import { BlockbookApi, pipelineKey } from './api';
import { LiveUpdates } from './live';
import { IPipelineSummary } from './types';

export class PipelineListing {
  constructor(
    readonly api: BlockbookApi,
    live: LiveUpdates
  ) {
    live.changed.connect((_, change) => {
      // A run's start and end change a pipeline's last run; block changes don't.
      if (change.kind !== 'block') {
        void this.refresh();
      }
    });
  }

  get pipelines(): ReadonlyArray<IPipelineSummary> {
    return this._pipelines;
  }

  get error(): Error | null {
    return this._error;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Fetch again; calls made while a fetch is under way share its answer. */
  refresh(): Promise<void> {
    if (!this._pending) {
      this._pending = this._fetch().finally(() => {
        this._pending = null;
      });
    }
    return this._pending;
  }

  async ready(): Promise<void> {
    if (!this._loaded) {
      await this.refresh();
    }
  }

  /** The pipeline a notebook belongs to: the one whose folder holds it. */
  forNotebook(notebookPath: string): IPipelineSummary | undefined {
    const folder = PathExt.dirname(notebookPath);
    return this._pipelines.find(p => p.path === folder);
  }

  /** By URL key (its escaped path) or name; a name shared by two pipelines matches none. */
  find(keyOrName: string): IPipelineSummary | undefined {
    const byKey = this._pipelines.find(p => pipelineKey(p) === keyOrName);
    if (byKey) {
      return byKey;
    }
    const named = this._pipelines.filter(p => p.pipeline === keyOrName);
    return named.length === 1 ? named[0] : undefined;
  }

  private async _fetch(): Promise<void> {
    try {
      this._pipelines = (await this.api.pipelines()).pipelines;
      this._error = null;
      this._loaded = true;
    } catch (error) {
      this._error = error as Error;
    }
    this._changed.emit();
  }

  private _pipelines: IPipelineSummary[] = [];
  private _error: Error | null = null;
  private _loaded = false;
  private _pending: Promise<void> | null = null;
  private readonly _changed = new Signal<this, void>(this);
}
