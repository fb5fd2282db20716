import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { formatDuration } from '../src/format';
import { blockName } from '../src/header';
import { BLOCK_STATUSES, BLOCK_TERMINAL, RUN_STATUSES, RUN_TERMINAL } from '../src/statuses';

describe('formatDuration', () => {
  it('reads in the unit that fits', () => {
    assert.equal(formatDuration(null), '');
    assert.equal(formatDuration(0.0123), '12 ms');
    assert.equal(formatDuration(2.345), '2.3 s');
    assert.equal(formatDuration(125), '2 min 5 s');
    assert.equal(formatDuration(3 * 3600 + 120), '3 h 2 min');
  });
});

describe('blockName', () => {
  it('reads the name of a %%block first line only', () => {
    assert.equal(blockName('%%block clean_trips --upstream load\ndf = 1'), 'clean_trips');
    assert.equal(blockName('%%block\tload'), 'load');
    assert.equal(blockName('x = 1\n%%block later'), null);
    assert.equal(blockName('%%blocky thing'), null);
    assert.equal(blockName('%block_new loader csv'), null);
  });
});

describe('statuses generated from pipelines/status.py', () => {
  it('declares terminal states among the statuses', () => {
    assert.ok(RUN_TERMINAL.every(status => RUN_STATUSES.includes(status)));
    assert.ok(BLOCK_TERMINAL.every(status => BLOCK_STATUSES.includes(status)));
    assert.ok(!RUN_TERMINAL.includes('running'));
    assert.ok(BLOCK_TERMINAL.includes('upstream_failed'));
  });
});
