// The runs view (newest first, filtered by pipeline and status, a page at a time) and a run's
// page: its blocks, the graph coloured by the run, logs, cancel, resume, debug, running one
// block again, and a comparison with another run of the pipeline.
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import * as React from 'react';

import { BlockbookApi, pipelineKey } from './api';
import { formatDuration, formatTime } from './format';
import { blockStates, GraphCanvas } from './graph';
import { RunDiffTable } from './diffview';
import { blockbookIcon } from './icons';
import { Change, isTerminal, LiveUpdates } from './live';
import { LiveView } from './liveview';
import { RUN_STATUSES, RunStatus } from './statuses';
import {
  IGraphBlock,
  IPipeline,
  IPipelineSummary,
  IRun,
  IRunBlock,
  IRunDiff,
  IRunWithBlocks
} from './types';

export const RUNS_ID = 'blockbook-runs';
const PAGE_SIZE = 50;

export interface IRunsViewOptions {
  api: BlockbookApi;
  live: LiveUpdates;
  openRun: (runId: string) => void;
}

export class RunsView extends LiveView {
  constructor(private readonly options: IRunsViewOptions) {
    super(options.live);
    this.id = RUNS_ID;
    this.addClass('bb-RunsView');
    this.title.icon = blockbookIcon;
    this.title.label = 'Blockbook runs';
    this.title.closable = true;
    void this.refresh();
  }

  /** Show only this pipeline's runs (its name), or every run. */
  setPipeline(pipeline: string): void {
    if (pipeline !== this._pipeline) {
      this._pipeline = pipeline;
      void this.refresh();
    }
  }

  protected async load(): Promise<void> {
    const page = await this.options.api.runs(this._query());
    this._runs = page.runs;
    this._nextBefore = page.next_before;
  }

  protected concerns(change: Change): boolean {
    return change.kind === 'run';
  }

  render(): JSX.Element {
    return (
      <div className="bb-RunsView-body">
        <header className="bb-ViewHeader">
          <h2>Runs</h2>
          <label>
            Pipeline{' '}
            <input
              className="jp-mod-styled"
              name="pipeline"
              value={this._pipeline}
              placeholder="all"
              onChange={event => this.setPipeline(event.target.value.trim())}
            />
          </label>
          <label>
            Status{' '}
            <select
              className="jp-mod-styled"
              name="status"
              value={this._status}
              onChange={event => {
                this._status = event.target.value as RunStatus | '';
                void this.refresh();
              }}
            >
              <option value="">all</option>
              {RUN_STATUSES.map(status => (
                <option key={status} value={status}>
                  {status}
                </option>
              ))}
            </select>
          </label>
          <button className="jp-mod-styled bb-Button" data-action="refresh" onClick={() => void this.refresh()}>
            Refresh
          </button>
        </header>
        {this.error && <p className="bb-Error" role="alert">{this.error}</p>}
        <table className="bb-Table">
          <thead>
            <tr>
              <th>Run</th>
              <th>Pipeline</th>
              <th>Status</th>
              <th>Trigger</th>
              <th>Started</th>
              <th>Duration</th>
            </tr>
          </thead>
          <tbody>
            {this._runs.map(run => (
              <RunRow key={run.run_id} run={run} open={this.options.openRun} />
            ))}
          </tbody>
        </table>
        {this._runs.length === 0 && !this.error && <p className="bb-Empty">No runs yet.</p>}
        {this._nextBefore && (
          <button className="jp-mod-styled bb-Button" data-action="more" onClick={() => void this._more()}>
            Older runs
          </button>
        )}
      </div>
    );
  }

  private _query() {
    return {
      pipeline: this._pipeline || undefined,
      status: this._status || undefined,
      limit: PAGE_SIZE
    };
  }

  private async _more(): Promise<void> {
    if (!this._nextBefore) {
      return;
    }
    const page = await this.options.api.runs({ ...this._query(), before: this._nextBefore });
    this._runs = [...this._runs, ...page.runs];
    this._nextBefore = page.next_before;
    this.update();
  }

  private _pipeline = '';
  private _status: RunStatus | '' = '';
  private _runs: IRun[] = [];
  private _nextBefore: string | null = null;
}

function RunRow(props: { run: IRun; open: (runId: string) => void }): JSX.Element {
  const { run } = props;
  return (
    <tr
      className="bb-RunRow"
      data-run={run.run_id}
      data-status={run.status}
      tabIndex={0}
      onClick={() => props.open(run.run_id)}
      onKeyDown={event => event.key === 'Enter' && props.open(run.run_id)}
      title="Open this run"
    >
      <td>
        <code>{run.run_id}</code>
      </td>
      <td>{run.pipeline}</td>
      <td>
        <span className={`bb-Chip bb-status-${run.status}`}>{run.status}</span>
      </td>
      <td>{run.trigger}</td>
      <td>{formatTime(run.started_at ?? run.created_at)}</td>
      <td>{formatDuration(run.duration)}</td>
    </tr>
  );
}

export interface IRunViewOptions {
  api: BlockbookApi;
  live: LiveUpdates;
  runId: string;
  /** Opens a block's executed notebook of this run at its cell. */
  openExecuted: (runId: string, block: string) => Promise<void>;
  /** Opens a contents path (the debug notebook). */
  openPath: (path: string) => void;
  openSourceBlock: (pipeline: IPipeline, block: IGraphBlock) => void;
  /** The pipeline a run belongs to (its folder), if it is still under the root. */
  pipelineOf: (run: IRun) => Promise<IPipelineSummary | undefined>;
  /** Starts a run that resumes this one; answers the new run's id. */
  resume: (run: IRun) => Promise<string | undefined>;
  /** Starts a run of this run's pipeline that runs `block` again even if nothing changed
  for it (`--force BLOCK`); answers the new run's id. */
  runAgain: (run: IRun, block: string) => Promise<string | undefined>;
}

/** How many earlier runs of the pipeline the run page offers to compare with. */
const COMPARABLE_RUNS = 20;

export class RunView extends LiveView {
  constructor(private readonly options: IRunViewOptions) {
    super(options.live);
    this.id = `blockbook-run-${options.runId}`;
    this.addClass('bb-RunView');
    this.title.icon = blockbookIcon;
    this.title.label = `Run ${options.runId}`;
    this.title.closable = true;
    void this.refresh();
  }

  get runId(): string {
    return this.options.runId;
  }

  protected async load(): Promise<void> {
    const { api, runId } = this.options;
    this._run = await api.run(runId);
    this.title.label = `${this._run.pipeline} run ${runId}`;
    if (this._comparable === null) {
      const page = await api.runs({ pipeline: this._run.pipeline, limit: COMPARABLE_RUNS });
      this._comparable = page.runs.filter(other => other.run_id !== runId);
    }
    if (!this._pipeline) {
      const summary = await this.options.pipelineOf(this._run);
      this._pipeline = summary ? await api.pipeline(pipelineKey(summary)) : null;
    }
  }

  protected concerns(change: Change): boolean {
    return change.kind !== 'pipelines' && change.run_id === this.options.runId;
  }

  render(): JSX.Element {
    const run = this._run;
    if (!run) {
      return <p className={this.error ? 'bb-Error' : 'bb-Empty'}>{this.error ?? 'Loading…'}</p>;
    }
    const ended = isTerminal(run.status);
    return (
      <div className="bb-RunView-body" data-run={run.run_id} data-run-status={run.status}>
        <header className="bb-ViewHeader">
          <h2>
            {run.pipeline} <code>{run.run_id}</code>
          </h2>
          <span className={`bb-Chip bb-status-${run.status}`}>{run.status}</span>
          <button
            className="jp-mod-styled jp-mod-warn bb-Button"
            data-action="cancel"
            disabled={ended}
            onClick={() => void this._cancel()}
          >
            Cancel
          </button>
          <button
            className="jp-mod-styled bb-Button"
            data-action="resume"
            disabled={!ended || run.status === 'success'}
            title="Run again what did not succeed, reusing what did"
            onClick={() => void this.options.resume(run)}
          >
            Retry what did not succeed
          </button>
        </header>
        <dl className="bb-RunFacts">
          <dt>Trigger</dt>
          <dd>{run.trigger}</dd>
          <dt>Started</dt>
          <dd>{formatTime(run.started_at ?? run.created_at)}</dd>
          <dt>Duration</dt>
          <dd>{formatDuration(run.duration) || '–'}</dd>
          {run.resumed_from && (
            <>
              <dt>Resumes</dt>
              <dd>
                <code>{run.resumed_from}</code>
              </dd>
            </>
          )}
          {Object.keys(run.params).length > 0 && (
            <>
              <dt>Parameters</dt>
              <dd>
                {Object.entries(run.params)
                  .map(([name, value]) => `${name}=${value}`)
                  .join(', ')}
              </dd>
            </>
          )}
        </dl>
        {this.error && <p className="bb-Error" role="alert">{this.error}</p>}
        {run.error && <pre className="bb-Error bb-RunError">{run.error}</pre>}
        <table className="bb-Table">
          <thead>
            <tr>
              <th>Block</th>
              <th>Status</th>
              <th>Attempts</th>
              <th>Duration</th>
              <th>Tests</th>
              <th>Error</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {run.blocks.map(block => (
              <BlockRow
                key={block.name}
                block={block}
                showLog={() => void this._showLog(block.name)}
                openNotebook={() => void this._openExecuted(block.name)}
                debug={() => void this._debug(block.name)}
                runAgain={() => void this.options.runAgain(run, block.name)}
                canRunAgain={ended}
              />
            ))}
          </tbody>
        </table>
        {this._log && (
          <section className="bb-Log" data-log-block={this._log.block}>
            <h3>
              Output of <code>{this._log.block}</code>
              <button className="jp-mod-styled bb-Button" onClick={() => this._closeLog()}>
                Close
              </button>
            </h3>
            <pre>{this._log.text || '(nothing printed)'}</pre>
          </section>
        )}
        {this._comparable !== null && this._comparable.length > 0 && (
          <section className="bb-RunCompare">
            <h3>
              <label>
                Compare with{' '}
                <select
                  className="jp-mod-styled"
                  name="compare"
                  value={this._diff?.other ?? ''}
                  onChange={event => void this._compare(event.target.value)}
                >
                  <option value="">another run…</option>
                  {this._comparable.map(other => (
                    <option key={other.run_id} value={other.run_id}>
                      {other.run_id} ({other.status})
                    </option>
                  ))}
                </select>
              </label>
            </h3>
            {this._diff?.error && <p className="bb-Error" role="alert">{this._diff.error}</p>}
            {this._diff?.diff && <RunDiffTable diff={this._diff.diff} />}
          </section>
        )}
        {this._pipeline && (
          <section className="bb-RunGraph">
            <h3>Graph of this run</h3>
            <GraphCanvas
              blocks={this._pipeline.blocks}
              states={blockStates(run.blocks)}
              onOpenBlock={block => this.options.openSourceBlock(this._pipeline!, block)}
            />
          </section>
        )}
      </div>
    );
  }

  private async _cancel(): Promise<void> {
    const answer = await showDialog({
      title: 'Cancel this run?',
      body: `Blocks still running in ${this.options.runId} are stopped; finished ones keep their results.`,
      buttons: [Dialog.cancelButton({ label: 'Keep running' }), Dialog.warnButton({ label: 'Cancel run' })]
    });
    if (!answer.button.accept) {
      return;
    }
    try {
      this._run = await this.options.api.cancel(this.options.runId);
    } catch (error) {
      await showErrorMessage('Could not cancel the run', error as Error);
    }
    this.update();
  }

  private async _showLog(block: string): Promise<void> {
    try {
      const text = await this.options.api.blockLog(this.options.runId, block);
      this._log = { block, text };
    } catch (error) {
      this._log = { block, text: (error as Error).message };
    }
    this.update();
  }

  private _closeLog(): void {
    this._log = null;
    this.update();
  }

  private async _openExecuted(block: string): Promise<void> {
    try {
      await this.options.openExecuted(this.options.runId, block);
    } catch (error) {
      await showErrorMessage('Could not open the executed notebook', error as Error);
    }
  }

  /** Show how `other` differs from this run: it is A, this run B (the earlier run is
  usually the one picked, so the table reads forward in time). */
  private async _compare(other: string): Promise<void> {
    if (!other) {
      this._diff = null;
    } else {
      try {
        this._diff = { other, diff: await this.options.api.diff(other, this.options.runId) };
      } catch (error) {
        this._diff = { other, error: (error as Error).message };
      }
    }
    this.update();
  }

  private async _debug(block: string): Promise<void> {
    try {
      const notebook = await this.options.api.debug(this.options.runId, block);
      this.options.openPath(notebook.path);
    } catch (error) {
      await showErrorMessage('Could not create the debug notebook', error as Error);
    }
  }

  private _run: IRunWithBlocks | null = null;
  private _pipeline: IPipeline | null = null;
  private _log: { block: string; text: string } | null = null;
  private _comparable: IRun[] | null = null;
  private _diff: { other: string; diff?: IRunDiff; error?: string } | null = null;
}

function BlockRow(props: {
  block: IRunBlock;
  showLog: () => void;
  openNotebook: () => void;
  debug: () => void;
  runAgain: () => void;
  canRunAgain: boolean;
}): JSX.Element {
  const { block } = props;
  // A cached block's log and cell are those of the run that executed it.
  const executed = !['pending', 'upstream_failed', 'skipped'].includes(block.status);
  const ran = executed && block.status !== 'cached';
  const passed = block.tests.filter(test => test.outcome === 'passed').length;
  const drift = block.schema_drift ?? [];
  return (
    <tr
      className={`bb-BlockRow${block.child_of ? ' bb-BlockRow--child' : ''}`}
      data-block={block.name}
      data-status={block.status}
      data-child-of={block.child_of ?? undefined}
    >
      <td>
        <code>{block.name}</code>
      </td>
      <td>
        <span className={`bb-Chip bb-status-${block.status}`} title={block.cache_note || undefined}>
          {block.status.replace('_', ' ')}
        </span>
        {block.reused_from && block.status !== 'cached' && (
          <span title={`reused from ${block.reused_from}`}> (reused)</span>
        )}
        {drift.length > 0 && (
          <span
            className="bb-Chip bb-Drift"
            data-drift={drift.length}
            title={`schema drift against ${drift[0].baseline}:\n${drift.map(d => d.message).join('\n')}`}
          >
            drift {drift.length}
          </span>
        )}
      </td>
      <td>{block.attempts}</td>
      <td>{formatDuration(block.duration)}</td>
      <td title={block.tests.map(test => `${test.name}: ${test.outcome}`).join('\n')}>
        {block.tests.length ? `${passed}/${block.tests.length} passed` : ''}
      </td>
      {/* A cached block's "error" is the note that says which run it reuses. */}
      <td className={block.status === 'cached' ? 'bb-BlockRow-note' : 'bb-BlockRow-error'}>
        {block.error ?? ''}
      </td>
      <td className="bb-BlockRow-actions">
        <button className="jp-mod-styled bb-Button" data-action="log" disabled={!executed} onClick={props.showLog}>
          Log
        </button>
        <button
          className="jp-mod-styled bb-Button"
          data-action="open-notebook"
          disabled={!executed}
          title={
            block.reused_from
              ? `Open the executed notebook of run ${block.reused_from}, which ran this block`
              : "Open the executed notebook at this block's cell"
          }
          onClick={props.openNotebook}
        >
          Open cell
        </button>
        <button
          className="jp-mod-styled bb-Button"
          data-action="debug"
          disabled={!ran}
          title="Create a notebook that re-creates this block with its inputs"
          onClick={props.debug}
        >
          Debug
        </button>
        <button
          className="jp-mod-styled bb-Button"
          data-action="force"
          disabled={!props.canRunAgain}
          title="Start a new run that runs this block again, and what reads it, even if nothing changed"
          onClick={props.runAgain}
        >
          Run again
        </button>
      </td>
    </tr>
  );
}
