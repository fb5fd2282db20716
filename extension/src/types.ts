// The JSON forms the server answers (pipelines/server/schemas.py). Objects may gain keys.
import { BlockStatus, RunStatus, Trigger } from './statuses';

export type ParamValue = string | number | boolean;
export type Params = Record<string, ParamValue>;

export interface IProblem {
  kind: string;
  severity: 'error' | 'warning';
  message: string;
  hint: string;
  notebook: string;
  /** 1-based, as the CLI prints it. */
  cell: number | null;
  cell_id: string | null;
  line: number | null;
}

export interface ISchedule {
  cron: string | null;
  every: string | null;
  timezone: string;
  catchup: 'none' | 'latest' | 'all';
  max_active_runs: number;
  params: Params;
}

export interface IRun {
  run_id: string;
  pipeline: string;
  pipeline_path: string;
  status: RunStatus;
  trigger: Trigger;
  params: Params;
  created_at: string | null;
  started_at: string | null;
  ended_at: string | null;
  resumed_from: string | null;
  scheduled_for: string | null;
  attempt: number;
  error: string | null;
  run_dir: string;
  duration: number | null;
}

export interface ITestRecord {
  name: string;
  outcome: string;
  message: string;
}

export interface IRunBlock {
  name: string;
  status: BlockStatus;
  attempts: number;
  error: string | null;
  notebook: string;
  started_at: string | null;
  ended_at: string | null;
  duration: number | null;
  reused_from: string | null;
  /** Why the block ran (what changed) or was cached; empty when the run did not decide. */
  cache_note: string;
  tests: ITestRecord[];
  outputs: Array<Record<string, unknown>>;
  /** How its stored frames differ from their baseline (`--schema warn|fail`). */
  schema_drift?: ISchemaDrift[];
  /** A fan-out child (`per_day[3]`): the mapped block it ran an item of. */
  child_of?: string | null;
  /** A fan-out child: its item's position, from 0. */
  item_index?: number | null;
}

export interface ISchemaDrift {
  output: string;
  kind: 'added' | 'removed' | 'renamed' | 'retyped' | 'rows' | 'missing';
  column: string | null;
  before: string | null;
  after: string | null;
  /** What it was compared with: `run R`, `schema file P`. */
  baseline: string;
  message: string;
}

export interface IRunWithBlocks extends IRun {
  blocks: IRunBlock[];
}

export interface IPipelineSummary {
  pipeline: string;
  folder: string;
  /** The folder as a contents path relative to the server root. */
  path: string;
  ok: boolean;
  errors: number;
  warnings: number;
  block_count: number;
  schedule: ISchedule | null;
  last_run: IRun | null;
  /** The [params] defaults of pipeline.toml, secret-named ones masked. */
  params?: Params;
}

export interface IGraphBlock {
  name: string;
  /** A mapped block (`--map NAME`): the upstream output it runs once per item of. */
  map?: string | null;
  /** Relative to the pipeline folder. */
  notebook: string;
  /** 1-based position of the block's cell in its notebook, as problems count. */
  cell: number;
  cell_id: string | null;
  kind: string;
  upstream: string[];
  outputs: string[];
  inputs: string[];
  /** Input name -> the block that provides it. */
  sources: Record<string, string>;
  stored_outputs: string[];
  tests: string[];
}

export interface IPipeline extends IPipelineSummary {
  blocks: IGraphBlock[];
  order: string[];
  problems: IProblem[];
  last_blocks: Record<string, IRunBlock>;
  /** Blocks whose code changed since the newest run: a run would run them again. */
  stale: string[];
}

export interface IProblems {
  pipeline: string;
  ok: boolean;
  problems: IProblem[];
}

export interface IRunPage {
  runs: IRun[];
  next_before: string | null;
}

export interface IRunRequest {
  params?: Params;
  only?: string[];
  resume?: string | null;
  /** true: run every block; block names: run those again (and what reads them). */
  force?: boolean | string[];
}

/** A value in run A and in run B (`null` where that run has none). */
export interface IDiffPair<T> {
  a: T | null;
  b: T | null;
  changed: boolean;
}

export interface IDiffRun {
  run_id: string;
  pipeline: string;
  status: RunStatus;
  trigger: Trigger;
  created_at: string;
  duration: number | null;
}

export interface IColumn {
  column: string;
  dtype: string;
}

export interface IOutputDiff {
  name: string;
  type: IDiffPair<string>;
  rows: IDiffPair<number>;
  sha256: IDiffPair<string>;
  schema: {
    added: IColumn[];
    removed: IColumn[];
    retyped: Array<{ column: string; a: string; b: string }>;
    changed: boolean;
  };
  changed: boolean;
}

export interface IBlockDiff {
  block: string;
  code: IDiffPair<string>;
  status: IDiffPair<BlockStatus>;
  duration: IDiffPair<number>;
  reused_from: IDiffPair<string>;
  outputs: IOutputDiff[];
  changed: boolean;
}

/** GET runs/{a}/diff/{b}: two runs side by side (`blockbook diff`). */
export interface IRunDiff {
  a: IDiffRun;
  b: IDiffRun;
  params: Record<string, IDiffPair<unknown>>;
  notebooks: Record<string, IDiffPair<string>>;
  blocks: IBlockDiff[];
  changed: { params: string[]; notebooks: string[]; blocks: string[] };
}

export interface INotebookLocation {
  path: string;
  cell_index: number;
  run_id: string;
  block: string;
}

export interface IDebugNotebook {
  path: string;
  created: boolean;
  run_id: string;
  block: string;
}

export interface IScheduleEntry extends ISchedule {
  pipeline: string;
  path: string;
  next_fire: string | null;
  last_fired: string | null;
}

export interface ITemplate {
  key: string;
  kind: string;
  source: string;
  description: string;
  default_name: string;
  parameters: string[];
  text: string;
}

export interface ILatestBlock {
  status: BlockStatus;
  duration: number | null;
  started_at: string | null;
  ended_at: string | null;
  error: string | null;
  source: 'run' | 'interactive';
  run_id: string | null;
}

export interface ILatest {
  pipeline: string;
  blocks: Record<string, ILatestBlock>;
  /** Blocks whose saved code changed since the newest run: a run would run them again. */
  stale: string[];
}

export interface IApiError {
  message: string;
  hint: string;
  kind: string;
}
