// Two runs of a pipeline side by side (GET runs/{a}/diff/{b}, as `blockbook diff` prints):
// what changed between them, parameters and code first, then each block that differs.
import * as React from 'react';

import { formatDuration } from './format';
import { IBlockDiff, IOutputDiff, IRunDiff } from './types';

export function RunDiffTable(props: { diff: IRunDiff }): JSX.Element {
  const { diff } = props;
  const changedParams = diff.changed.params;
  const changedNotebooks = diff.changed.notebooks;
  const changedBlocks = diff.blocks.filter(block => block.changed);
  const nothing = !changedParams.length && !changedNotebooks.length && !changedBlocks.length;
  return (
    <div className="bb-Diff" data-diff-a={diff.a.run_id} data-diff-b={diff.b.run_id}>
      <p className="bb-Diff-sides">
        A <code>{diff.a.run_id}</code> ({diff.a.status}, {formatDuration(diff.a.duration) || '–'}) → B{' '}
        <code>{diff.b.run_id}</code> ({diff.b.status}, {formatDuration(diff.b.duration) || '–'})
      </p>
      {nothing && <p className="bb-Empty">Nothing differs: same parameters, code and outputs.</p>}
      {changedParams.length > 0 && (
        <table className="bb-Table" data-diff-section="params">
          <thead>
            <tr>
              <th>Parameter</th>
              <th>A</th>
              <th>B</th>
            </tr>
          </thead>
          <tbody>
            {changedParams.map(name => (
              <tr key={name} data-param={name}>
                <td>
                  <code>{name}</code>
                </td>
                <td>{shown(diff.params[name]?.a)}</td>
                <td>{shown(diff.params[name]?.b)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {changedNotebooks.length > 0 && (
        <p data-diff-section="notebooks">
          Code changed in {changedNotebooks.map(path => <code key={path}>{path} </code>)}
        </p>
      )}
      {changedBlocks.length > 0 && (
        <table className="bb-Table" data-diff-section="blocks">
          <thead>
            <tr>
              <th>Block</th>
              <th>Status A → B</th>
              <th>Duration A → B</th>
              <th>Code</th>
              <th>Outputs</th>
            </tr>
          </thead>
          <tbody>
            {changedBlocks.map(block => (
              <BlockDiffRow key={block.block} block={block} />
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function BlockDiffRow(props: { block: IBlockDiff }): JSX.Element {
  const { block } = props;
  return (
    <tr data-diff-block={block.block} data-code-changed={String(block.code.changed)}>
      <td>
        <code>{block.block}</code>
      </td>
      <td>
        {shown(block.status.a)} → {shown(block.status.b)}
      </td>
      <td>
        {formatDuration(block.duration.a) || '–'} → {formatDuration(block.duration.b) || '–'}
      </td>
      <td>{block.code.changed ? 'changed' : 'same'}</td>
      <td>
        {block.outputs
          .filter(output => output.changed)
          .map(output => (
            <div key={output.name} data-diff-output={output.name}>
              <code>{output.name}</code>: {outputChange(output)}
            </div>
          ))}
      </td>
    </tr>
  );
}

/** What changed about an output, in words: rows, columns, or only its bytes. */
export function outputChange(output: IOutputDiff): string {
  const parts: string[] = [];
  if (output.rows.changed) {
    parts.push(`rows ${shown(output.rows.a)} → ${shown(output.rows.b)}`);
  }
  const { added, removed, retyped } = output.schema;
  parts.push(...added.map(c => `+${c.column} (${c.dtype})`));
  parts.push(...removed.map(c => `−${c.column} (${c.dtype})`));
  parts.push(...retyped.map(c => `${c.column} ${c.a} → ${c.b}`));
  if (output.type.changed) {
    parts.push(`type ${shown(output.type.a)} → ${shown(output.type.b)}`);
  }
  return parts.length ? parts.join(', ') : 'other data';
}

function shown(value: unknown): string {
  return value === null || value === undefined ? '–' : String(value);
}
