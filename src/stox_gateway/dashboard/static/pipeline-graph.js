// A workflow's pipeline drawn as a graph: one column per depth (a step stands one column right
// of the deepest step it waits for), so parallel branches stand side by side in one column and
// a fan-in sits right of all of them. Edges are drawn in an SVG layer from the boxes' measured
// positions, so they follow any layout the stylesheet picks (rows on a narrow screen).
//
// The graph comes from the workflow's `definition` (the one it started with); without one
// (a workflow from before pipelines were data) from each step's `after`, and failing that the
// steps run in list order, one after another.

import { h } from './dom.js';
import { stepLabel } from './format.js';

const SVG = 'http://www.w3.org/2000/svg';

/**
 * The nodes of a workflow's graph, in definition order:
 * `[{type, after: [types], depth, step}]` where `step` is the workflow's step of that type.
 */
export function graphOf(workflow) {
  const steps = workflow?.steps ?? [];
  const byType = new Map(steps.map((step) => [step.type, step]));
  let spec = workflow?.definition?.steps;
  if (!Array.isArray(spec) || !spec.length) {
    spec = steps.every((step) => Array.isArray(step.after))
      ? steps.map((step) => ({ type: step.type, after: step.after }))
      : steps.map((step, index) => ({
        type: step.type, after: index ? [steps[index - 1].type] : [],
      }));
  }
  const known = new Set(spec.map((item) => item.type));
  const after = new Map(spec.map((item) => [
    item.type, (Array.isArray(item.after) ? item.after : []).filter((t) => known.has(t)),
  ]));
  const depths = new Map();
  const depthOf = (type, seen = new Set()) => {
    if (depths.has(type)) return depths.get(type);
    if (seen.has(type)) return 0; // a cycle cannot come from the gateway; draw it flat anyway
    seen.add(type);
    const parents = after.get(type) ?? [];
    const depth = parents.length ? 1 + Math.max(...parents.map((p) => depthOf(p, seen))) : 0;
    depths.set(type, depth);
    return depth;
  };
  return spec.map((item) => ({
    type: item.type,
    after: after.get(item.type),
    depth: depthOf(item.type),
    step: byType.get(item.type) ?? null,
  }));
}

/** The nodes grouped by depth: `columns[d]` holds the nodes of depth d, in definition order. */
export function columnsOf(nodes) {
  const columns = [];
  for (const node of nodes) (columns[node.depth] ??= []).push(node);
  return columns.filter(Boolean);
}

/** One line a person reads: `image_processing → ai_enhancement, translation → seo_generation`. */
export function levelsText(nodes, label = stepLabel) {
  return columnsOf(nodes).map((column) => column.map((n) => label(n.type)).join(', '))
    .join(' → ');
}

export class PipelineGraph {
  /**
   * `card(node, index)` returns the content of a step's box; `decorate(box, node)` sets its
   * class and data attributes after each render (the caller's own state classes).
   */
  constructor({ card, decorate, label = 'Pipeline steps', testid = 'pipeline' }) {
    this.card = card;
    this.decorate = decorate;
    this.svg = document.createElementNS(SVG, 'svg');
    this.svg.setAttribute('class', 'graph-edges');
    this.svg.setAttribute('aria-hidden', 'true');
    this.columns = h('ol', { class: 'graph-columns' });
    this.root = h('div', {
      class: 'graph', 'data-testid': testid, role: 'group', 'aria-label': label,
    }, this.svg, this.columns);
    this.shape = null;
    this.boxes = new Map(); // step type → its box
    this.nodes = [];
    this.frame = 0;
    this.resizes = new ResizeObserver(() => this.scheduleEdges());
    this.resizes.observe(this.root);
  }

  /** Draw `nodes` (from graphOf); rebuilds the boxes only when the graph's shape changed. */
  render(nodes, signature = (node) => JSON.stringify(node.step ?? null)) {
    this.nodes = nodes;
    const shape = JSON.stringify(nodes.map((n) => [n.type, n.after, n.depth]));
    if (shape !== this.shape) {
      this.shape = shape;
      this.boxes.clear();
      this.resizes.disconnect();
      this.resizes.observe(this.root);
      const columns = columnsOf(nodes);
      this.root.dataset.columns = String(columns.length);
      this.columns.replaceChildren(...columns.map((column, depth) => h('li', {
        class: 'graph-column', 'data-depth': String(depth),
        'aria-label': `Stage ${depth + 1} of ${columns.length}`
          + (column.length > 1 ? `: ${column.length} steps in parallel` : ''),
      }, h('ol', { class: 'graph-steps' }, column.map((node) => {
        const box = h('li', { 'data-depth': String(depth) });
        this.boxes.set(node.type, box);
        this.resizes.observe(box);
        return box;
      })))));
    }
    nodes.forEach((node, index) => {
      const box = this.boxes.get(node.type);
      const sig = signature(node);
      if (box.__signature !== sig) {
        box.__signature = sig;
        const waits = node.after.length
          ? h('p', { class: 'sr-only' }, `Runs after ${node.after.map(stepLabel).join(' and ')}.`)
          : null;
        box.replaceChildren(...[this.card(node, index), waits].flat(Infinity).filter(Boolean));
      }
      this.decorate(box, node);
    });
    this.scheduleEdges();
  }

  scheduleEdges() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.drawEdges();
    });
  }

  drawEdges() {
    const origin = this.root.getBoundingClientRect();
    const place = (el) => {
      const r = el.getBoundingClientRect();
      const left = r.left - origin.left + this.root.scrollLeft;
      const top = r.top - origin.top + this.root.scrollTop;
      return { left, top, right: left + r.width, bottom: top + r.height,
        cx: left + r.width / 2, cy: top + r.height / 2 };
    };
    this.svg.setAttribute('width', String(this.root.scrollWidth));
    this.svg.setAttribute('height', String(this.root.scrollHeight));
    const paths = [];
    for (const node of this.nodes) {
      const to = this.boxes.get(node.type);
      if (!to?.isConnected || !to.offsetParent) continue;
      for (const parent of node.after) {
        const from = this.boxes.get(parent);
        if (!from) continue;
        const a = place(from);
        const b = place(to);
        let d;
        if (b.left >= a.right - 1) { // left to right: right edge to left edge
          const bend = Math.max(12, (b.left - a.right) / 2);
          d = `M${a.right},${a.cy} C${a.right + bend},${a.cy} ${b.left - bend},${b.cy} `
            + `${b.left},${b.cy}`;
        } else { // top to bottom (narrow screens): bottom edge to top edge
          const bend = Math.max(12, (b.top - a.bottom) / 2);
          d = `M${a.cx},${a.bottom} C${a.cx},${a.bottom + bend} ${b.cx},${b.top - bend} `
            + `${b.cx},${b.top}`;
        }
        const path = document.createElementNS(SVG, 'path');
        path.setAttribute('d', d);
        const done = node.step && this.boxes.get(parent)?.dataset.state === 'completed';
        path.setAttribute('class', `edge${done ? ' edge-done' : ''}`);
        path.dataset.from = parent;
        path.dataset.to = node.type;
        paths.push(path);
      }
    }
    this.svg.replaceChildren(...paths);
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    this.resizes.disconnect();
  }
}
