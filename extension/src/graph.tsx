// The graph view: a pipeline's blocks as a DAG (ELK layout, grouped by notebook), each node
// coloured by its status in the newest run, or in one given run; live while a run is active.
import * as React from 'react';

import { BlockbookApi } from './api';
import { formatDuration } from './format';
import { blockbookIcon } from './icons';
import type { ELK as ElkEngine } from 'elkjs/lib/elk-api';

import { blockLabel, IPlacedGraph, layoutGraph, NODE_HEIGHT } from './layout';
import { Change, LiveUpdates } from './live';
import { LiveView } from './liveview';
import { IGraphBlock, IPipeline, IRunBlock } from './types';

let elkEngine: Promise<ElkEngine> | null = null;

/** ELK is large: loaded with the first graph drawn, not with JupyterLab. */
function elk(): Promise<ElkEngine> {
  elkEngine ??= import('elkjs/lib/elk.bundled.js').then(module => new module.default());
  return elkEngine;
}

export interface IBlockState {
  status: string;
  duration: number | null;
}

/** The status shown for a block: its run state, or `none` when it never ran. */
export function blockStates(blocks: ReadonlyArray<IRunBlock>): Record<string, IBlockState> {
  return Object.fromEntries(
    blocks.map(block => [block.name, { status: block.status, duration: block.duration }])
  );
}

export interface IGraphCanvasProps {
  blocks: ReadonlyArray<IGraphBlock>;
  states: Record<string, IBlockState>;
  onOpenBlock: (block: IGraphBlock) => void;
  /** Blocks whose code changed since the run whose states are shown. */
  stale?: ReadonlyArray<string>;
}

export function GraphCanvas(props: IGraphCanvasProps): JSX.Element {
  const [placed, setPlaced] = React.useState<IPlacedGraph | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const shape = JSON.stringify(props.blocks);
  React.useEffect(() => {
    let current = true;
    elk()
      .then(engine => layoutGraph(engine, props.blocks))
      .then(
      graph => current && setPlaced(graph),
      reason => current && setError(String(reason))
    );
    return () => {
      current = false;
    };
  }, [shape]);
  if (error) {
    return <p className="bb-Error">Could not lay out the graph: {error}</p>;
  }
  if (!placed) {
    return <p className="bb-Empty">Laying out…</p>;
  }
  if (placed.nodes.length === 0) {
    return <p className="bb-Empty">This pipeline has no blocks yet.</p>;
  }
  const margin = 12;
  return (
    <svg
      className="bb-Graph"
      width={placed.width + 2 * margin}
      height={placed.height + 2 * margin}
      viewBox={`${-margin} ${-margin} ${placed.width + 2 * margin} ${placed.height + 2 * margin}`}
      role="img"
      aria-label="pipeline graph"
    >
      <defs>
        <marker id="bb-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M 0 0 L 10 5 L 0 10 z" className="bb-Graph-arrow" />
        </marker>
      </defs>
      {placed.groups.map(group => (
        <g key={group.notebook} className="bb-Graph-group" data-notebook={group.notebook}>
          <rect x={group.x} y={group.y} width={group.width} height={group.height} rx={6} />
          <text x={group.x + 10} y={group.y + 19}>
            {group.notebook}
          </text>
        </g>
      ))}
      {placed.edges.map(edge => (
        <g key={edge.id} className="bb-Graph-edge" data-source={edge.source} data-target={edge.target}>
          <polyline points={edge.points.map(p => `${p.x},${p.y}`).join(' ')} markerEnd="url(#bb-arrow)" />
          {edge.label && (
            <text x={edge.label.x} y={edge.label.y} textAnchor="middle">
              <title>{edge.names.join(', ')}</title>
              {edge.label.text}
            </text>
          )}
        </g>
      ))}
      {placed.nodes.map(node => {
        const state = props.states[node.block.name];
        const status = state?.status ?? 'none';
        const stale = props.stale?.includes(node.block.name) ?? false;
        return (
          <g
            key={node.block.name}
            className={`bb-Graph-node bb-status-${status}${stale ? ' bb-Graph-node--stale' : ''}`}
            data-block={node.block.name}
            data-status={status}
            data-stale={stale ? 'true' : undefined}
            transform={`translate(${node.x},${node.y})`}
            role="button"
            tabIndex={0}
            onClick={() => props.onOpenBlock(node.block)}
            onKeyDown={event => event.key === 'Enter' && props.onOpenBlock(node.block)}
          >
            <title>
              {`${node.block.name} (${node.block.kind}) in ${node.block.notebook}, cell ${node.block.cell}\n` +
                `status: ${status}\n` +
                (stale ? 'code changed since this run: the next run runs it again\n' : '') +
                'click to open the cell'}
            </title>
            <rect width={node.width} height={NODE_HEIGHT} rx={5} />
            <text className="bb-Graph-name" x={10} y={19}>
              {blockLabel(node.block, props.states)}
            </text>
            <text className="bb-Graph-status" x={10} y={37}>
              {status === 'none' ? node.block.kind : status.replace('_', ' ')}
              {state?.duration !== null && state?.duration !== undefined
                ? ` · ${formatDuration(state.duration)}`
                : ''}
              {stale ? ' · changed' : ''}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

export interface IGraphViewOptions {
  api: BlockbookApi;
  live: LiveUpdates;
  /** The pipeline's URL key (its escaped contents path). */
  pipelineKey: string;
  openBlock: (pipeline: IPipeline, block: IGraphBlock) => void;
}

/** The graph of a pipeline, coloured by its newest run and refreshed as runs change. */
export class GraphView extends LiveView {
  constructor(private readonly options: IGraphViewOptions) {
    super(options.live);
    this.addClass('bb-GraphView');
    this.title.icon = blockbookIcon;
    this.title.closable = true;
    this.title.label = 'Graph';
    void this.refresh();
  }

  protected async load(): Promise<void> {
    this._pipeline = await this.options.api.pipeline(this.options.pipelineKey);
    this.title.label = `${this._pipeline.pipeline} graph`;
    this.title.caption = `Blockbook graph of ${this._pipeline.path}`;
  }

  protected concerns(change: Change): boolean {
    const pipeline = this._pipeline;
    return change.kind === 'pipelines' || !pipeline || change.pipeline === pipeline.pipeline;
  }

  render(): JSX.Element {
    const pipeline = this._pipeline;
    if (this.error) {
      return <p className="bb-Error" role="alert">{this.error}</p>;
    }
    if (!pipeline) {
      return <p className="bb-Empty">Loading…</p>;
    }
    const run = pipeline.last_run;
    return (
      <div className="bb-GraphView-body" data-pipeline={pipeline.pipeline}>
        <header className="bb-ViewHeader">
          <h2>{pipeline.pipeline}</h2>
          <span className="bb-ViewHeader-meta">
            {run ? (
              <>
                last run <code>{run.run_id}</code>{' '}
                <span className={`bb-Chip bb-status-${run.status}`} data-run-status={run.status}>
                  {run.status}
                </span>
              </>
            ) : (
              'never run'
            )}
          </span>
        </header>
        {!pipeline.ok && (
          <p className="bb-Error">
            {pipeline.errors} problem(s): fix them before running (see the Pipelines panel).
          </p>
        )}
        <GraphCanvas
          blocks={pipeline.blocks}
          states={blockStates(Object.values(pipeline.last_blocks))}
          stale={pipeline.stale}
          onOpenBlock={block => this.options.openBlock(pipeline, block)}
        />
      </div>
    );
  }

  private _pipeline: IPipeline | null = null;
}
