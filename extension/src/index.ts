// The composition root of the frontend: one API client, one live-update source and one
// pipeline listing, shared by the panel, the views, the cell badges and the commands.
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  showDialog,
  showErrorMessage,
  ToolbarButton
} from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { ILauncher } from '@jupyterlab/launcher';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import { BlockbookApi, pipelineKey } from './api';
import { CellBadges } from './badges';
import { CommandIds } from './commands';
import { RunsDrive } from './drive';
import { ParamsForm, TemplatePicker } from './forms';
import { GraphView } from './graph';
import { blockbookIcon } from './icons';
import { isTerminal, LiveUpdates } from './live';
import { PipelineListing } from './model';
import { notebookPath, openAtCell } from './open';
import { PANEL_ID, PipelinesPanel } from './panel';
import { RunsView, RunView } from './runs';
import { RunStatusItem } from './statusbar';
import { IGraphBlock, IPipeline, IPipelineSummary, IRun, IRunRequest } from './types';

const CATEGORY = 'Blockbook';

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@blockbook/jupyterlab:plugin',
  description: 'Blockbook pipelines, graphs and runs in JupyterLab',
  autoStart: true,
  requires: [IDocumentManager, INotebookTracker],
  optional: [ICommandPalette, IStatusBar, ILauncher, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    docManager: IDocumentManager,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    statusBar: IStatusBar | null,
    launcher: ILauncher | null
  ) => {
    const api = new BlockbookApi(app.serviceManager.serverSettings);
    const live = new LiveUpdates(api, app.serviceManager.events ?? null);
    const listing = new PipelineListing(api, live);
    app.serviceManager.contents.addDrive(new RunsDrive(api));
    const ui = new Workbench(app, docManager, tracker, api, live, listing);

    app.shell.add(new PipelinesPanel(listing, app.commands), 'left', { rank: 450 });
    new CellBadges(api, listing, live, tracker);
    ui.registerCommands();
    addNotebookButton(app);

    if (palette) {
      for (const command of [
        CommandIds.runPipeline,
        CommandIds.openGraph,
        CommandIds.showRuns,
        CommandIds.insertTemplate,
        CommandIds.showPanel
      ]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }
    launcher?.add({ command: CommandIds.showRuns, category: 'Other', rank: 10 });
    statusBar?.registerStatusItem('blockbook:runs', {
      item: new RunStatusItem(live, () => app.commands.execute(CommandIds.showRuns, {})),
      align: 'left',
      rank: 50,
      isActive: () => live.active.size > 0,
      activeStateChanged: live.activeChanged
    });
  }
};

/** The commands and the main-area views they open, one of each kind per subject. */
class Workbench {
  constructor(
    private readonly app: JupyterFrontEnd,
    private readonly docManager: IDocumentManager,
    private readonly tracker: INotebookTracker,
    private readonly api: BlockbookApi,
    private readonly live: LiveUpdates,
    private readonly listing: PipelineListing
  ) {}

  registerCommands(): void {
    const { commands } = this.app;
    const pipelineArg = {
      type: 'object' as const,
      properties: { pipeline: { type: 'string', description: 'name or escaped folder path' } }
    };
    commands.addCommand(CommandIds.runPipeline, {
      label: 'Run Pipeline',
      caption: "Run this notebook's pipeline",
      icon: args => (args.toolbar ? blockbookIcon : undefined),
      describedBy: { args: pipelineArg },
      execute: args => this.runPipeline(args.pipeline as string | undefined)
    });
    commands.addCommand(CommandIds.openGraph, {
      label: 'Open Pipeline Graph',
      describedBy: { args: pipelineArg },
      execute: args => this.withPipeline(args.pipeline as string | undefined, p => this.openGraph(p))
    });
    commands.addCommand(CommandIds.showRuns, {
      label: args => (args.pipeline ? 'Show Runs of Pipeline' : 'Show Runs'),
      caption: 'Blockbook runs, newest first',
      icon: blockbookIcon,
      describedBy: { args: pipelineArg },
      execute: args => this.showRuns(args.pipeline as string | undefined)
    });
    commands.addCommand(CommandIds.openRun, {
      label: 'Open Run',
      describedBy: {
        args: { type: 'object', properties: { run_id: { type: 'string' } }, required: ['run_id'] }
      },
      execute: args => this.openRun(args.run_id as string)
    });
    commands.addCommand(CommandIds.insertTemplate, {
      label: 'Insert Block from Template',
      isEnabled: () => this.tracker.currentWidget !== null,
      execute: () => this.insertTemplate()
    });
    commands.addCommand(CommandIds.openCell, {
      label: 'Open Notebook at Cell',
      execute: args =>
        openAtCell(this.docManager, {
          path: args.path as string,
          cellId: args.cellId as string | null,
          cellIndex: args.cellIndex as number | null
        })
    });
    commands.addCommand(CommandIds.showPanel, {
      label: 'Show Pipelines Panel',
      execute: () => this.app.shell.activateById(PANEL_ID)
    });
  }

  async runPipeline(keyOrName?: string): Promise<void> {
    await this.withPipeline(keyOrName, async pipeline => {
      const form = new ParamsForm(pipeline.params ?? {});
      const answer = await showDialog({
        title: `Run ${pipeline.pipeline}`,
        body: form,
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })],
        focusNodeSelector: 'input'
      });
      if (!answer.button.accept) {
        return;
      }
      await this.start(pipeline, { params: answer.value ?? {} });
    });
  }

  async pipelineOf(run: IRun): Promise<IPipelineSummary | undefined> {
    await this.listing.ready();
    return this.listing.pipelines.find(p => p.folder === run.pipeline_path);
  }

  async resume(run: IRun): Promise<string | undefined> {
    const pipeline = await this.pipelineOf(run);
    if (!pipeline) {
      await showErrorMessage('Cannot resume', `No pipeline at ${run.pipeline_path} any more.`);
      return undefined;
    }
    return this.start(pipeline, { resume: run.run_id });
  }

  async runAgain(run: IRun, block: string): Promise<string | undefined> {
    const pipeline = await this.pipelineOf(run);
    if (!pipeline) {
      await showErrorMessage('Cannot run again', `No pipeline at ${run.pipeline_path} any more.`);
      return undefined;
    }
    return this.start(pipeline, { force: [block] });
  }

  private async start(pipeline: IPipelineSummary, request: IRunRequest): Promise<string | undefined> {
    let runId: string;
    try {
      runId = (await this.api.startRun(pipelineKey(pipeline), request)).run_id;
    } catch (error) {
      await showErrorMessage(`Could not start ${pipeline.pipeline}`, error as Error);
      return undefined;
    }
    this.notifyWhenDone(runId, pipeline.pipeline);
    this.live.watch(runId, pipeline.pipeline);
    this.openGraph(pipeline);
    return runId;
  }

  /** A notification that follows a run this page started, with a link to it when it ends. */
  private notifyWhenDone(runId: string, pipeline: string): void {
    const open = { label: 'Open run', callback: () => void this.openRun(runId) };
    const id = Notification.emit(`Run ${runId} of ${pipeline} started`, 'in-progress', {
      autoClose: false,
      actions: [open]
    });
    const onChange = (_: LiveUpdates, change: any) => {
      if (change.kind === 'run' && change.run_id === runId && isTerminal(change.status)) {
        this.live.changed.disconnect(onChange);
        const ok = change.status === 'success';
        Notification.update({
          id,
          message: `Run ${runId} of ${pipeline} ended: ${change.status}`,
          type: ok ? 'success' : 'error',
          autoClose: ok ? 8000 : false,
          actions: [open]
        });
      }
    };
    this.live.changed.connect(onChange);
  }

  openGraph(pipeline: IPipelineSummary): void {
    const key = pipelineKey(pipeline);
    const id = `blockbook-graph-${key}`;
    if (!this.reveal(id)) {
      const view = new GraphView({
        api: this.api,
        live: this.live,
        pipelineKey: key,
        openBlock: (p, block) => void this.openSourceBlock(p, block)
      });
      view.id = id;
      this.app.shell.add(view, 'main');
    }
  }

  async showRuns(keyOrName?: string): Promise<void> {
    const pipeline = keyOrName ? await this.findPipeline(keyOrName) : undefined;
    let view = this.findWidget<RunsView>(RunsView);
    if (!view) {
      view = new RunsView({ api: this.api, live: this.live, openRun: id => void this.openRun(id) });
      this.app.shell.add(view, 'main');
    }
    view.setPipeline(pipeline?.pipeline ?? '');
    this.app.shell.activateById(view.id);
  }

  async openRun(runId: string): Promise<void> {
    const id = `blockbook-run-${runId}`;
    if (this.reveal(id)) {
      return;
    }
    const view = new RunView({
      api: this.api,
      live: this.live,
      runId,
      openExecuted: async (run, block) => {
        const location = await this.api.blockNotebook(run, block);
        await openAtCell(this.docManager, { path: location.path, cellIndex: location.cell_index });
      },
      openPath: path => void this.docManager.openOrReveal(path),
      openSourceBlock: (p, block) => void this.openSourceBlock(p, block),
      pipelineOf: run => this.pipelineOf(run),
      resume: run => this.resume(run),
      runAgain: (run, block) => this.runAgain(run, block)
    });
    this.app.shell.add(view, 'main');
  }

  private async openSourceBlock(pipeline: IPipeline, block: IGraphBlock): Promise<void> {
    await openAtCell(this.docManager, {
      path: notebookPath(pipeline.path, block.notebook),
      cellId: block.cell_id,
      cellIndex: block.cell - 1
    });
  }

  private async insertTemplate(): Promise<void> {
    const panel = this.tracker.currentWidget;
    if (!panel) {
      return;
    }
    const { templates } = await this.api.templates();
    const answer = await showDialog({
      title: 'Insert block from template',
      body: new TemplatePicker(templates),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Insert' })]
    });
    if (!answer.button.accept || !answer.value) {
      return;
    }
    insertCellBelow(panel, answer.value.text);
  }

  /** The pipeline named, else the one of the current notebook; says why when there is none. */
  private async withPipeline(
    keyOrName: string | undefined,
    act: (pipeline: IPipelineSummary) => void | Promise<void>
  ): Promise<void> {
    const pipeline = keyOrName
      ? await this.findPipeline(keyOrName)
      : await this.currentPipeline();
    if (!pipeline) {
      const what = keyOrName
        ? `No pipeline "${decodeURIComponent(keyOrName)}" under the server's root.`
        : 'This notebook is not in a pipeline folder. Open a notebook of a pipeline, or pick one in the Blockbook panel.';
      await showErrorMessage('No pipeline', what);
      return;
    }
    await act(pipeline);
  }

  private async findPipeline(keyOrName: string): Promise<IPipelineSummary | undefined> {
    await this.listing.ready();
    if (!this.listing.find(keyOrName)) {
      await this.listing.refresh(); // made since the listing was fetched
    }
    return this.listing.find(keyOrName);
  }

  private async currentPipeline(): Promise<IPipelineSummary | undefined> {
    const panel = this.tracker.currentWidget;
    if (!panel) {
      return undefined;
    }
    await this.listing.ready();
    return this.listing.forNotebook(panel.context.path);
  }

  private reveal(id: string): boolean {
    for (const widget of this.app.shell.widgets('main')) {
      if (widget.id === id) {
        this.app.shell.activateById(id);
        return true;
      }
    }
    return false;
  }

  private findWidget<T extends Widget>(kind: new (...args: any[]) => T): T | undefined {
    for (const widget of this.app.shell.widgets('main')) {
      if (widget instanceof kind) {
        return widget;
      }
    }
    return undefined;
  }
}

function insertCellBelow(panel: NotebookPanel, source: string): void {
  const notebook = panel.content;
  NotebookActions.insertBelow(notebook);
  const cell = notebook.activeCell;
  if (cell) {
    cell.model.sharedModel.setSource(source);
  }
}

function addNotebookButton(app: JupyterFrontEnd): void {
  app.docRegistry.addWidgetExtension('Notebook', {
    createNew: (panel: NotebookPanel) => {
      const button = new ToolbarButton({
        icon: blockbookIcon,
        label: 'Run pipeline',
        tooltip: "Run this notebook's pipeline with Blockbook",
        className: 'bb-NotebookRunButton',
        onClick: () => void app.commands.execute(CommandIds.runPipeline, {})
      });
      panel.toolbar.insertItem(10, 'blockbookRunPipeline', button);
      return button;
    }
  });
}

export default plugin;
