// Command ids: what the palette, the panel, the notebook toolbar and tests call.
export namespace CommandIds {
  export const runPipeline = 'blockbook:run-pipeline';
  export const openGraph = 'blockbook:open-graph';
  export const showRuns = 'blockbook:show-runs';
  export const openRun = 'blockbook:open-run';
  export const insertTemplate = 'blockbook:insert-template';
  export const openCell = 'blockbook:open-cell';
  export const showPanel = 'blockbook:show-panel';
}
