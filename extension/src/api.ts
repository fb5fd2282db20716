// The REST client: every call the frontend makes goes through jupyter_server's own
// ServerConnection, which adds the token, the XSRF header and the base URL.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  IApiError,
  IDebugNotebook,
  ILatest,
  INotebookLocation,
  IPipeline,
  IPipelineSummary,
  IProblems,
  IRunDiff,
  IRunPage,
  IRunRequest,
  IRunWithBlocks,
  IScheduleEntry,
  ITemplate
} from './types';
import { RunStatus } from './statuses';

export const API_PATH = 'blockbook/api';

/** An error the API answered with `{message, hint, kind}`, or a network failure. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: IApiError
  ) {
    super(body.hint ? `${body.message} ${body.hint}` : body.message);
    this.name = 'ApiError';
  }
}

export interface IRunQuery {
  pipeline?: string;
  status?: RunStatus;
  limit?: number;
  before?: string;
}

/** A pipeline's name in a URL: its contents path, slashes escaped, tells same-named apart. */
export function pipelineKey(pipeline: Pick<IPipelineSummary, 'path'>): string {
  return encodeURIComponent(pipeline.path);
}

export class BlockbookApi {
  constructor(
    readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  pipelines(): Promise<{ pipelines: IPipelineSummary[] }> {
    return this.get('pipelines');
  }

  pipeline(key: string): Promise<IPipeline> {
    return this.get(`pipelines/${key}`);
  }

  problems(key: string): Promise<IProblems> {
    return this.get(`pipelines/${key}/problems`);
  }

  latest(key: string): Promise<ILatest> {
    return this.get(`pipelines/${key}/latest`);
  }

  startRun(key: string, request: IRunRequest): Promise<{ run_id: string }> {
    return this.send('POST', `pipelines/${key}/runs`, request);
  }

  runs(query: IRunQuery = {}): Promise<IRunPage> {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== '') {
        search.set(name, String(value));
      }
    }
    const text = search.toString();
    return this.get(text ? `runs?${text}` : 'runs');
  }

  run(runId: string): Promise<IRunWithBlocks> {
    return this.get(`runs/${encodeURIComponent(runId)}`);
  }

  /** Run `runId` (A) against `other` (B): parameters, code, statuses, outputs. */
  diff(runId: string, other: string): Promise<IRunDiff> {
    return this.get(`runs/${encodeURIComponent(runId)}/diff/${encodeURIComponent(other)}`);
  }

  cancel(runId: string): Promise<IRunWithBlocks> {
    return this.send('POST', `runs/${encodeURIComponent(runId)}/cancel`, {});
  }

  async blockLog(runId: string, block: string): Promise<string> {
    const response = await this.request(
      `runs/${encodeURIComponent(runId)}/blocks/${encodeURIComponent(block)}/log`,
      { method: 'GET' }
    );
    return response.text();
  }

  blockNotebook(runId: string, block: string): Promise<INotebookLocation> {
    return this.get(
      `runs/${encodeURIComponent(runId)}/blocks/${encodeURIComponent(block)}/notebook`
    );
  }

  /** An executed notebook as a contents model, for the read-only drive. */
  runNotebook(runId: string, notebook: string): Promise<any> {
    return this.get(
      `runs/${encodeURIComponent(runId)}/notebooks/${encodeURIComponent(notebook)}`
    );
  }

  debug(runId: string, block: string): Promise<IDebugNotebook> {
    return this.send(
      'POST',
      `runs/${encodeURIComponent(runId)}/blocks/${encodeURIComponent(block)}/debug`,
      {}
    );
  }

  schedules(): Promise<{ schedules: IScheduleEntry[] }> {
    return this.get('schedules');
  }

  templates(): Promise<{ templates: ITemplate[] }> {
    return this.get('templates');
  }

  private async get<T>(path: string): Promise<T> {
    const response = await this.request(path, { method: 'GET' });
    return (await response.json()) as T;
  }

  private async send<T>(method: string, path: string, body: unknown): Promise<T> {
    const response = await this.request(path, { method, body: JSON.stringify(body) });
    return (await response.json()) as T;
  }

  private async request(path: string, init: RequestInit): Promise<Response> {
    const url = URLExt.join(this.settings.baseUrl, API_PATH, path);
    let response: Response;
    try {
      // 'no-cache' revalidates instead of adding ServerConnection's bare cache-busting
      // query key, which the API's strict query checking would refuse.
      response = await ServerConnection.makeRequest(
        url,
        { cache: 'no-cache', ...init },
        this.settings
      );
    } catch (error) {
      throw new ServerConnection.NetworkError(error as TypeError);
    }
    if (!response.ok) {
      throw new ApiError(response.status, await errorBody(response));
    }
    return response;
  }
}

async function errorBody(response: Response): Promise<IApiError> {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (typeof body?.message === 'string') {
      return { message: body.message, hint: body.hint ?? '', kind: body.kind ?? 'internal' };
    }
  } catch {
    // jupyter_server's own error pages (403 without a token) are HTML, not JSON.
  }
  return {
    message: `${response.status} ${response.statusText}`.trim(),
    hint: response.status === 403 ? 'Log in to Jupyter again.' : '',
    kind: response.status === 403 ? 'forbidden' : 'internal'
  };
}
