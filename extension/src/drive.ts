// The read-only `BlockbookRuns` drive: executed notebooks of runs, served by the server
// extension from the hidden run folder, so they open in JupyterLab without copies and without
// changing any server setting (docs/server.md, "Opening executed and debug notebooks").
import { URLExt } from '@jupyterlab/coreutils';
import { Contents, ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { API_PATH, BlockbookApi } from './api';

export const DRIVE_NAME = 'BlockbookRuns';

class ReadOnlyError extends Error {
  constructor(what: string) {
    super(`A run's executed notebook is its record and cannot be changed (${what}).`);
  }
}

export class RunsDrive implements Contents.IDrive {
  readonly name = DRIVE_NAME;

  constructor(private readonly api: BlockbookApi) {}

  get serverSettings(): ServerConnection.ISettings {
    return this.api.settings;
  }

  get fileChanged(): ISignal<this, Contents.IChangedArgs> {
    return this._fileChanged;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    this._isDisposed = true;
    Signal.clearData(this);
  }

  /** `localPath` is `RUN_ID/NAME.ipynb`, as the notebook route's `path` names it. */
  async get(localPath: string): Promise<Contents.IModel> {
    const [runId, notebook] = splitPath(localPath);
    return (await this.api.runNotebook(runId, notebook)) as Contents.IModel;
  }

  async getDownloadUrl(localPath: string): Promise<string> {
    const [runId, notebook] = splitPath(localPath);
    return URLExt.join(
      this.api.settings.baseUrl,
      API_PATH,
      'runs',
      encodeURIComponent(runId),
      'notebooks',
      encodeURIComponent(notebook)
    );
  }

  newUntitled(): Promise<Contents.IModel> {
    return Promise.reject(new ReadOnlyError('new file'));
  }

  delete(): Promise<void> {
    return Promise.reject(new ReadOnlyError('delete'));
  }

  rename(): Promise<Contents.IModel> {
    return Promise.reject(new ReadOnlyError('rename'));
  }

  save(): Promise<Contents.IModel> {
    return Promise.reject(
      new ReadOnlyError('save; use "Create debug notebook" for an editable copy')
    );
  }

  copy(): Promise<Contents.IModel> {
    return Promise.reject(new ReadOnlyError('copy'));
  }

  createCheckpoint(): Promise<Contents.ICheckpointModel> {
    return Promise.reject(new ReadOnlyError('checkpoint'));
  }

  async listCheckpoints(): Promise<Contents.ICheckpointModel[]> {
    return [];
  }

  restoreCheckpoint(): Promise<void> {
    return Promise.reject(new ReadOnlyError('restore'));
  }

  deleteCheckpoint(): Promise<void> {
    return Promise.reject(new ReadOnlyError('checkpoint'));
  }

  private _isDisposed = false;
  private readonly _fileChanged = new Signal<this, Contents.IChangedArgs>(this);
}

function splitPath(localPath: string): [string, string] {
  const parts = localPath.split('/').filter(Boolean);
  if (parts.length !== 2) {
    throw new Error(`Not an executed notebook of a run: ${localPath}`);
  }
  return [parts[0], parts[1]];
}
