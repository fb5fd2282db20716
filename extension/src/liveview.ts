// A main-area view that shows what the API answers and fetches it again when a live change
// concerns it: the graph, the runs list and a run's page.
import { ReactWidget } from '@jupyterlab/ui-components';

import { Change, LiveUpdates } from './live';

/** Changes arrive in bursts (a run's blocks end together): one fetch serves a burst. */
export const BURST_MS = 150;

export abstract class LiveView extends ReactWidget {
  constructor(private readonly _live: LiveUpdates) {
    super();
    _live.changed.connect(this._onChange, this);
  }

  /** Fetch again and draw; a failed fetch is shown in the view, not thrown. */
  async refresh(): Promise<void> {
    try {
      await this.load();
      this.error = null;
    } catch (error) {
      this.error = (error as Error).message;
    }
    this.update();
  }

  dispose(): void {
    this._live.changed.disconnect(this._onChange, this);
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
    }
    super.dispose();
  }

  /** Fetch what the view shows. */
  protected abstract load(): Promise<void>;

  /** Whether a change may alter what the view shows. */
  protected abstract concerns(change: Change): boolean;

  protected error: string | null = null;

  private _onChange(_: LiveUpdates, change: Change): void {
    if (this._timer === null && this.concerns(change)) {
      this._timer = window.setTimeout(() => {
        this._timer = null;
        void this.refresh();
      }, BURST_MS);
    }
  }

  private _timer: number | null = null;
}
