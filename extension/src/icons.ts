import { LabIcon } from '@jupyterlab/ui-components';

// Three blocks joined into a small graph: the Blockbook mark.
const BLOCKBOOK_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">
<g class="jp-icon3" fill="#616161">
<rect x="2" y="3" width="8" height="6" rx="1.5"/>
<rect x="14" y="3" width="8" height="6" rx="1.5"/>
<rect x="8" y="15" width="8" height="6" rx="1.5"/>
<path d="M6 9v2.5h6V15h0.01M18 9v2.5h-6" stroke="#616161" stroke-width="1.6" fill="none"/>
</g></svg>`;

export const blockbookIcon = new LabIcon({ name: 'blockbook:logo', svgstr: BLOCKBOOK_SVG });
