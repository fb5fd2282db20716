// The graph layout with the real ELK engine: grouping by notebook, labelled edges, and a
// placement in which every block sits inside its notebook's box and edges go left to right.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import ELK from 'elkjs/lib/elk.bundled.js';

import { blockLabel, edgeLabel, elkGraph, graphEdges, layoutGraph } from '../src/layout';
import { IGraphBlock } from '../src/types';

function block(
  name: string,
  notebook: string,
  upstream: string[] = [],
  sources: Record<string, string> = {}
): IGraphBlock {
  return {
    name,
    notebook,
    cell: 1,
    cell_id: null,
    kind: 'custom',
    upstream,
    outputs: [],
    inputs: Object.keys(sources),
    sources,
    stored_outputs: [],
    tests: []
  };
}

// load.ipynb: load -> clean (same notebook); report.ipynb reads both, one by --upstream only.
const BLOCKS = [
  block('load', 'load.ipynb'),
  block('clean', 'load.ipynb', ['load'], { trips: 'load' }),
  block('report', 'report.ipynb', ['clean', 'load'], { clean_trips: 'clean', zones: 'clean' })
];

describe('graphEdges', () => {
  it('makes one edge per upstream, labelled with the names that upstream provides', () => {
    assert.deepEqual(graphEdges(BLOCKS), [
      { id: 'load->clean', source: 'load', target: 'clean', names: ['trips'] },
      { id: 'clean->report', source: 'clean', target: 'report', names: ['clean_trips', 'zones'] },
      { id: 'load->report', source: 'load', target: 'report', names: [] }
    ]);
  });

  it('shortens long labels and keeps the count of the rest', () => {
    assert.equal(edgeLabel(['a', 'b', 'c', 'd', 'e']), 'a, b, c +2');
    assert.equal(edgeLabel([]), '');
  });
});

describe('elkGraph', () => {
  it('groups blocks into one compound node per notebook, in notebook order', () => {
    const graph = elkGraph(BLOCKS);
    assert.deepEqual(
      graph.children!.map(group => [group.id, group.children!.map(child => child.id)]),
      [
        ['notebook:load.ipynb', ['block:load', 'block:clean']],
        ['notebook:report.ipynb', ['block:report']]
      ]
    );
    assert.equal(graph.layoutOptions!['elk.hierarchyHandling'], 'INCLUDE_CHILDREN');
  });
});

describe('layoutGraph', () => {
  it('places each block inside its notebook box, upstream blocks to the left', async () => {
    const placed = await layoutGraph(new ELK(), BLOCKS);
    const node = (name: string) => placed.nodes.find(n => n.block.name === name)!;
    for (const n of placed.nodes) {
      const group = placed.groups.find(g => g.notebook === n.block.notebook)!;
      assert.ok(n.x >= group.x && n.x + n.width <= group.x + group.width, `${n.block.name} x`);
      assert.ok(n.y >= group.y && n.y + n.height <= group.y + group.height, `${n.block.name} y`);
    }
    assert.ok(node('load').x < node('clean').x);
    assert.ok(node('clean').x < node('report').x);
    assert.equal(placed.edges.length, 3);
    for (const edge of placed.edges) {
      assert.ok(edge.points.length >= 2, `${edge.id} has a route`);
      const end = edge.points[edge.points.length - 1];
      const target = node(edge.target);
      assert.ok(Math.abs(end.x - target.x) < 1, `${edge.id} ends at ${edge.target}'s left side`);
    }
    const labelled = placed.edges.find(edge => edge.id === 'clean->report')!;
    assert.equal(labelled.label?.text, 'clean_trips, zones');
    assert.equal(placed.edges.find(edge => edge.id === 'load->report')!.label, undefined);
  });

  it('lays out an empty pipeline as nothing', async () => {
    const placed = await layoutGraph(new ELK(), []);
    assert.deepEqual([placed.nodes, placed.edges, placed.groups], [[], [], []]);
  });
});

describe('blockLabel', () => {
  const mapped = { ...block('per_day', 'map.ipynb', ['make_days']), map: 'days' };

  it('counts the children of a mapped block in the run shown', () => {
    const states = {
      per_day: { status: 'failed' },
      'per_day[0]': { status: 'success' },
      'per_day[1]': { status: 'failed' },
      'per_day[2]': { status: 'success' },
      'per_dayz[0]': { status: 'success' },
      report: { status: 'upstream_failed' }
    };
    assert.equal(blockLabel(mapped, states), 'per_day ×3');
  });

  it('says 0 for an empty list, ? before the run reaches the block', () => {
    assert.equal(blockLabel(mapped, { per_day: { status: 'success' } }), 'per_day ×0');
    assert.equal(blockLabel(mapped, {}), 'per_day ×?');
    assert.equal(blockLabel(mapped, { per_day: { status: 'running' } }), 'per_day ×?');
  });

  it('leaves other blocks their name', () => {
    assert.equal(blockLabel(block('report', 'r.ipynb'), { 'report[0]': { status: 'success' } }), 'report');
  });
});
