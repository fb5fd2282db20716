// The status bar item: how many runs are in progress, shown only while some are.
import { Widget } from '@lumino/widgets';

import { LiveUpdates } from './live';

export class RunStatusItem extends Widget {
  constructor(
    private readonly live: LiveUpdates,
    onClick: () => void
  ) {
    super();
    this.id = 'blockbook-status';
    this.addClass('bb-StatusItem');
    this.node.title = 'Blockbook runs in progress; click to see them';
    this.node.addEventListener('click', onClick);
    live.activeChanged.connect(() => this._paint());
    this._paint();
  }

  private _paint(): void {
    const runs = [...this.live.active.values()];
    const running = runs.filter(run => run.status === 'running').length;
    const queued = runs.length - running;
    const parts = [];
    if (running) {
      parts.push(`${running} running`);
    }
    if (queued) {
      parts.push(`${queued} queued`);
    }
    this.node.textContent = parts.length ? `Blockbook: ${parts.join(', ')}` : '';
    this.node.dataset.active = String(runs.length);
  }
}
