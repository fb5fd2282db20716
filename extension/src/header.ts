// The one thing the frontend reads from a cell's text: the block name of its `%%block` line.
// Everything else about headers is parsed by the server (pipelines.assembly.header).

const HEADER = /^%%block[ \t]+([A-Za-z_][A-Za-z0-9_]*)/;

/** The block a cell holds, from its first line; null for other cells. */
export function blockName(source: string): string | null {
  return HEADER.exec(source)?.[1] ?? null;
}
