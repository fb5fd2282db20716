// The Pipelines panel in the left sidebar: every pipeline with its state and problems, and
// the buttons that run it, open its graph and show its runs.
import { ReactWidget } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { BlockbookApi, pipelineKey } from './api';
import { CommandIds } from './commands';
import { formatDuration, formatTime } from './format';
import { blockbookIcon } from './icons';
import { PipelineListing } from './model';
import { IPipelineSummary, IProblem, ISchedule } from './types';

export const PANEL_ID = 'blockbook-pipelines';

export class PipelinesPanel extends ReactWidget {
  constructor(
    private readonly listing: PipelineListing,
    private readonly commands: CommandRegistry
  ) {
    super();
    this.id = PANEL_ID;
    this.title.icon = blockbookIcon;
    this.title.caption = 'Blockbook pipelines';
    this.addClass('bb-Panel');
    listing.changed.connect(() => this.update());
    void listing.refresh();
  }

  render(): JSX.Element {
    return (
      <PipelineList
        listing={this.listing}
        run={key => this.commands.execute(CommandIds.runPipeline, { pipeline: key })}
        graph={key => this.commands.execute(CommandIds.openGraph, { pipeline: key })}
        runs={key => this.commands.execute(CommandIds.showRuns, { pipeline: key })}
        openProblem={(pipeline, problem) =>
          this.commands.execute(CommandIds.openCell, {
            path: pipeline.path ? `${pipeline.path}/${problem.notebook}` : problem.notebook,
            cellId: problem.cell_id,
            cellIndex: problem.cell === null ? null : problem.cell - 1
          })
        }
      />
    );
  }
}

interface IListProps {
  listing: PipelineListing;
  run: (key: string) => void;
  graph: (key: string) => void;
  runs: (key: string) => void;
  openProblem: (pipeline: IPipelineSummary, problem: IProblem) => void;
}

function PipelineList(props: IListProps): JSX.Element {
  const { listing } = props;
  return (
    <div className="bb-PipelineList">
      <header className="bb-Panel-header">
        <h2>Pipelines</h2>
        <button
          className="jp-mod-styled bb-Button"
          data-action="refresh"
          title="Look for pipelines again"
          onClick={() => void listing.refresh()}
        >
          Refresh
        </button>
      </header>
      {listing.error && (
        <p className="bb-Error" role="alert">
          {listing.error.message}
        </p>
      )}
      {listing.pipelines.length === 0 && !listing.error && (
        <p className="bb-Empty">
          No pipelines under this folder yet. A pipeline is a folder of notebooks whose cells
          start with <code>%%block NAME</code>.
        </p>
      )}
      <ul className="bb-PipelineList-items">
        {listing.pipelines.map(pipeline => (
          <PipelineRow key={pipeline.path} pipeline={pipeline} {...props} />
        ))}
      </ul>
    </div>
  );
}

function PipelineRow(props: IListProps & { pipeline: IPipelineSummary }): JSX.Element {
  const { pipeline } = props;
  const key = pipelineKey(pipeline);
  const [showProblems, setShowProblems] = React.useState(false);
  const problemCount = pipeline.errors + pipeline.warnings;
  const lastRun = pipeline.last_run;
  const state = !pipeline.ok ? 'invalid' : (lastRun?.status ?? 'none');
  return (
    <li
      className="bb-PipelineRow"
      data-pipeline={pipeline.pipeline}
      data-path={pipeline.path}
      data-status={state}
    >
      <div className="bb-PipelineRow-head">
        <span className={`bb-Dot bb-status-${state}`} title={state} />
        <span className="bb-PipelineRow-name" title={pipeline.path}>
          {pipeline.pipeline}
        </span>
        <span className="bb-PipelineRow-count">
          {pipeline.block_count} {pipeline.block_count === 1 ? 'block' : 'blocks'}
        </span>
      </div>
      <div className="bb-PipelineRow-meta">
        {lastRun ? (
          <span title={lastRun.run_id}>
            last run {lastRun.status} {formatTime(lastRun.started_at ?? lastRun.created_at)}
            {lastRun.duration !== null ? ` in ${formatDuration(lastRun.duration)}` : ''}
          </span>
        ) : (
          <span>never run</span>
        )}
        {pipeline.schedule && <span> · {scheduleText(pipeline.schedule)}</span>}
      </div>
      <div className="bb-PipelineRow-actions">
        <button
          className="jp-mod-styled jp-mod-accept bb-Button"
          data-action="run"
          disabled={!pipeline.ok}
          title={pipeline.ok ? 'Run this pipeline' : 'Fix the problems first'}
          onClick={() => props.run(key)}
        >
          Run
        </button>
        <button className="jp-mod-styled bb-Button" data-action="graph" onClick={() => props.graph(key)}>
          Graph
        </button>
        <button className="jp-mod-styled bb-Button" data-action="runs" onClick={() => props.runs(key)}>
          Runs
        </button>
        {problemCount > 0 && (
          <button
            className={`jp-mod-styled bb-Button ${pipeline.errors ? 'bb-mod-error' : 'bb-mod-warning'}`}
            data-action="problems"
            aria-expanded={showProblems}
            onClick={() => setShowProblems(!showProblems)}
          >
            {problemText(pipeline)}
          </button>
        )}
      </div>
      {showProblems && (
        <ProblemList api={props.listing.api} pipeline={pipeline} open={props.openProblem} />
      )}
    </li>
  );
}

function ProblemList(props: {
  api: BlockbookApi;
  pipeline: IPipelineSummary;
  open: (pipeline: IPipelineSummary, problem: IProblem) => void;
}): JSX.Element {
  const { api, pipeline } = props;
  const [problems, setProblems] = React.useState<IProblem[] | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  React.useEffect(() => {
    api.problems(pipelineKey(pipeline)).then(
      answer => setProblems(answer.problems),
      reason => setError(String(reason.message ?? reason))
    );
  }, [pipeline]);
  if (error) {
    return <p className="bb-Error">{error}</p>;
  }
  if (problems === null) {
    return <p className="bb-Empty">Loading…</p>;
  }
  return (
    <ul className="bb-ProblemList">
      {problems.map((problem, index) => (
        <li
          key={index}
          className={`bb-Problem bb-mod-${problem.severity}`}
          data-problem={problem.kind}
          data-severity={problem.severity}
          role="button"
          tabIndex={0}
          title="Open the notebook at this cell"
          onClick={() => props.open(pipeline, problem)}
          onKeyDown={event => event.key === 'Enter' && props.open(pipeline, problem)}
        >
          <div className="bb-Problem-where">
            {problem.notebook}
            {problem.cell !== null ? `, cell ${problem.cell}` : ''}
            {problem.line !== null ? `, line ${problem.line}` : ''}
          </div>
          <div className="bb-Problem-message">{problem.message}</div>
          {problem.hint && <div className="bb-Problem-hint">{problem.hint}</div>}
        </li>
      ))}
    </ul>
  );
}

function problemText(pipeline: IPipelineSummary): string {
  const parts = [];
  if (pipeline.errors) {
    parts.push(`${pipeline.errors} ${pipeline.errors === 1 ? 'problem' : 'problems'}`);
  }
  if (pipeline.warnings) {
    parts.push(`${pipeline.warnings} ${pipeline.warnings === 1 ? 'warning' : 'warnings'}`);
  }
  return parts.join(', ');
}

function scheduleText(schedule: ISchedule): string {
  return schedule.cron ? `cron ${schedule.cron}` : `every ${schedule.every}`;
}
