// Live run status: jupyter_events from the server when its event socket works, polling of
// the REST API otherwise (paused while the page is hidden and while no run is active).
import { Event } from '@jupyterlab/services';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { BlockbookApi } from './api';
import { BlockStatus, RUN_TERMINAL, RunStatus } from './statuses';
import { IRun } from './types';

export const RUN_EVENT = 'urn:blockbook:event:run:v1';
export const BLOCK_EVENT = 'urn:blockbook:event:block:v1';
export const PIPELINES_EVENT = 'urn:blockbook:event:pipelines:v1';

export type Change =
  | { kind: 'run'; run_id: string; pipeline: string; status: RunStatus }
  | { kind: 'block'; run_id: string; pipeline: string; block: string; status: BlockStatus }
  | { kind: 'pipelines' };

export function isTerminal(status: RunStatus): boolean {
  return RUN_TERMINAL.includes(status);
}

const POLL_INTERVAL_MS = 2000;

export class LiveUpdates {
  constructor(
    private readonly api: BlockbookApi,
    events: Event.IManager | null
  ) {
    events?.stream.connect(this._onEvent, this);
    this._poll = new Poll({
      factory: () => this._refreshActive(),
      frequency: { interval: POLL_INTERVAL_MS, backoff: true, max: 30 * 1000 },
      // The event stream, once it delivered, makes polling redundant; with nothing active
      // there is nothing to watch.
      standby: () => this._eventsSeen || this._active.size === 0 || 'when-hidden',
      name: 'blockbook:runs'
    });
    void this._refreshActive();
  }

  /** Every run or block status change, and changes to the pipelines under the root. */
  get changed(): ISignal<this, Change> {
    return this._changed;
  }

  /** The runs seen queued or running, by id. */
  get active(): ReadonlyMap<string, IRun> {
    return this._active;
  }

  get activeChanged(): ISignal<this, void> {
    return this._activeChanged;
  }

  /** A run this page just started: watch it at once, whether or not events flow. */
  watch(runId: string, pipeline: string): void {
    this._changed.emit({ kind: 'run', run_id: runId, pipeline, status: 'queued' });
    void this._refreshActive();
  }

  dispose(): void {
    this._poll.dispose();
    Signal.clearData(this);
  }

  private _onEvent(_: Event.IManager, event: Event.Emission): void {
    const data = event as unknown as Record<string, any>;
    switch (event.schema_id) {
      case RUN_EVENT:
        this._eventsSeen = true;
        this._onRunStatus(data.run_id, data.pipeline, data.status);
        break;
      case BLOCK_EVENT:
        this._eventsSeen = true;
        this._changed.emit({
          kind: 'block',
          run_id: data.run_id,
          pipeline: data.pipeline,
          block: data.block,
          status: data.status
        });
        break;
      case PIPELINES_EVENT:
        this._changed.emit({ kind: 'pipelines' });
        break;
    }
  }

  private _onRunStatus(runId: string, pipeline: string, status: RunStatus): void {
    if (isTerminal(status)) {
      if (this._active.delete(runId)) {
        this._activeChanged.emit();
      }
      this._changed.emit({ kind: 'run', run_id: runId, pipeline, status });
      return;
    }
    const known = this._active.get(runId);
    if (!known || known.status !== status) {
      void this._refreshActive();
    }
    this._changed.emit({ kind: 'run', run_id: runId, pipeline, status });
  }

  private async _refreshActive(): Promise<void> {
    const [running, queued] = await Promise.all([
      this.api.runs({ status: 'running', limit: 100 }),
      this.api.runs({ status: 'queued', limit: 100 })
    ]);
    const now = new Map<string, IRun>();
    for (const run of [...running.runs, ...queued.runs]) {
      now.set(run.run_id, run);
    }
    const ended = [...this._active.keys()].filter(id => !now.has(id));
    const before = this._active;
    this._active = now;
    for (const run of now.values()) {
      const previous = before.get(run.run_id);
      if (!this._eventsSeen && previous?.status !== run.status) {
        this._changed.emit({ kind: 'run', ...runFields(run) });
      }
    }
    for (const runId of ended) {
      const run = await this.api.run(runId);
      this._changed.emit({ kind: 'run', ...runFields(run) });
    }
    const changed = [...now.values()].some(run => before.get(run.run_id)?.status !== run.status);
    if (ended.length || changed) {
      this._activeChanged.emit();
    }
    if (now.size > 0 && !this._eventsSeen) {
      void this._poll.start();
    }
  }

  private _active = new Map<string, IRun>();
  private _eventsSeen = false;
  private readonly _poll: Poll;
  private readonly _changed = new Signal<this, Change>(this);
  private readonly _activeChanged = new Signal<this, void>(this);
}

function runFields(run: IRun): { run_id: string; pipeline: string; status: RunStatus } {
  return { run_id: run.run_id, pipeline: run.pipeline, status: run.status };
}
