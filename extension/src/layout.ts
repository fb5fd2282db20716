// The graph's layout: blocks grouped by notebook, edges labelled with the names they pass,
// placed by ELK's layered algorithm. Pure functions of the graph JSON, so they test in node.
import type { ELK as ElkEngine, ElkExtendedEdge, ElkNode } from 'elkjs/lib/elk-api';

import { IGraphBlock } from './types';

export const NODE_HEIGHT = 48;
const CHAR_WIDTH = 7.5;
const MIN_NODE_WIDTH = 150;
const LABEL_HEIGHT = 14;

/**
 * A block's name in the graph; a mapped block (`--map`) adds ` ×N`, N its children
 * (`per_day[0]`, ...) among the run's block states shown, `?` while the run has not reached it.
 */
export function blockLabel(
  block: IGraphBlock,
  states: Readonly<Record<string, { status: string }>>
): string {
  if (!block.map) {
    return block.name;
  }
  const prefix = `${block.name}[`;
  const children = Object.keys(states).filter(
    name => name.startsWith(prefix) && /^\d+\]$/.test(name.slice(prefix.length))
  ).length;
  const known = children > 0 || states[block.name]?.status === 'success';
  return `${block.name} ×${known ? children : '?'}`;
}

export interface IGraphEdge {
  id: string;
  source: string;
  target: string;
  /** The input names the target reads from the source; empty for an `--upstream` only edge. */
  names: string[];
}

export interface IPlacedNode {
  block: IGraphBlock;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface IPlacedGroup {
  notebook: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface IPlacedEdge extends IGraphEdge {
  points: Array<{ x: number; y: number }>;
  label?: { x: number; y: number; text: string };
}

export interface IPlacedGraph {
  width: number;
  height: number;
  groups: IPlacedGroup[];
  nodes: IPlacedNode[];
  edges: IPlacedEdge[];
}

/** One edge per (upstream, block), labelled with the inputs the upstream provides. */
export function graphEdges(blocks: ReadonlyArray<IGraphBlock>): IGraphEdge[] {
  const edges: IGraphEdge[] = [];
  for (const block of blocks) {
    for (const upstream of block.upstream) {
      const names = Object.entries(block.sources)
        .filter(([, source]) => source === upstream)
        .map(([name]) => name)
        .sort();
      edges.push({ id: `${upstream}->${block.name}`, source: upstream, target: block.name, names });
    }
  }
  return edges;
}

export function edgeLabel(names: ReadonlyArray<string>): string {
  return names.length > 3 ? `${names.slice(0, 3).join(', ')} +${names.length - 3}` : names.join(', ');
}

/** The ELK graph: a compound node per notebook (in notebook order) holding its blocks. */
export function elkGraph(blocks: ReadonlyArray<IGraphBlock>): ElkNode {
  const notebooks = [...new Set(blocks.map(block => block.notebook))].sort();
  const edges: ElkExtendedEdge[] = graphEdges(blocks).map(edge => {
    const text = edgeLabel(edge.names);
    return {
      id: edge.id,
      sources: [nodeId(edge.source)],
      targets: [nodeId(edge.target)],
      labels: text ? [{ text, width: text.length * CHAR_WIDTH * 0.9, height: LABEL_HEIGHT }] : []
    };
  });
  return {
    id: 'root',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'RIGHT',
      'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
      'elk.edgeRouting': 'ORTHOGONAL',
      'elk.layered.spacing.nodeNodeBetweenLayers': '60',
      'elk.spacing.nodeNode': '24',
      'elk.spacing.edgeLabel': '4',
      'elk.edgeLabels.placement': 'CENTER',
      'elk.layered.nodePlacement.strategy': 'BRANDES_KOEPF',
      // Every coordinate relative to the root, so drawing needs no offsets.
      'elk.json.shapeCoords': 'ROOT',
      'elk.json.edgeCoords': 'ROOT'
    },
    children: notebooks.map(notebook => ({
      id: groupId(notebook),
      layoutOptions: { 'elk.padding': '[top=30,left=14,bottom=14,right=14]' },
      labels: [{ text: notebook }],
      children: blocks
        .filter(block => block.notebook === notebook)
        .map(block => ({
          id: nodeId(block.name),
          // A mapped block's name is followed by its count of items (` ×12`).
          width: Math.max(MIN_NODE_WIDTH, (block.name.length + (block.map ? 5 : 0)) * CHAR_WIDTH + 40),
          height: NODE_HEIGHT
        }))
    })),
    edges
  };
}

export async function layoutGraph(
  elk: ElkEngine,
  blocks: ReadonlyArray<IGraphBlock>
): Promise<IPlacedGraph> {
  const laid = await elk.layout(elkGraph(blocks));
  const byId = new Map(blocks.map(block => [nodeId(block.name), block]));
  const groups: IPlacedGroup[] = [];
  const nodes: IPlacedNode[] = [];
  for (const group of laid.children ?? []) {
    groups.push({
      notebook: group.id.slice(GROUP_PREFIX.length),
      x: group.x ?? 0,
      y: group.y ?? 0,
      width: group.width ?? 0,
      height: group.height ?? 0
    });
    for (const child of group.children ?? []) {
      nodes.push({
        block: byId.get(child.id)!,
        x: child.x ?? 0,
        y: child.y ?? 0,
        width: child.width ?? 0,
        height: child.height ?? 0
      });
    }
  }
  const source = new Map(graphEdges(blocks).map(edge => [edge.id, edge]));
  const edges = allEdges(laid).map(edge => {
    const points = (edge.sections ?? []).flatMap(section => [
      section.startPoint,
      ...(section.bendPoints ?? []),
      section.endPoint
    ]);
    const label = edge.labels?.[0];
    return {
      ...source.get(edge.id)!,
      points,
      label: label?.text
        ? { x: (label.x ?? 0) + (label.width ?? 0) / 2, y: (label.y ?? 0) + LABEL_HEIGHT - 3, text: label.text }
        : undefined
    };
  });
  return { width: laid.width ?? 0, height: laid.height ?? 0, groups, nodes, edges };
}

/** ELK may move an edge into the node that contains both ends; gather them from every level. */
function allEdges(node: ElkNode): ElkExtendedEdge[] {
  return [...(node.edges ?? []), ...(node.children ?? []).flatMap(allEdges)];
}

const NODE_PREFIX = 'block:';
const GROUP_PREFIX = 'notebook:';

function nodeId(block: string): string {
  return NODE_PREFIX + block;
}

function groupId(notebook: string): string {
  return GROUP_PREFIX + notebook;
}
