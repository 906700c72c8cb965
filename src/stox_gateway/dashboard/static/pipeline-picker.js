// The upload form's choice of workflow type: the pipelines the gateway is configured with
// (GET /api/v1/pipelines), the default selected, and a picture of the chosen one's graph.
// A gateway that does not answer the route (older, or an error) leaves the choice out, and
// uploads then run the gateway's default type.

import { gateway } from './api.js';
import { h } from './dom.js';
import { stepLabel } from './format.js';
import { graphOf, levelsText, PipelineGraph } from './pipeline-graph.js';

export class PipelinePicker {
  constructor() {
    this.pipelines = new Map(); // type → its definition ({type, version, steps})
    this.select = h('select', {
      id: 'upload-type', name: 'workflow_type', 'data-testid': 'upload-type',
      'aria-describedby': 'upload-type-hint upload-type-error',
      onchange: () => this.show(),
    });
    this.hint = h('p', { class: 'hint', id: 'upload-type-hint', 'data-testid': 'upload-type-hint' });
    this.graph = new PipelineGraph({
      label: 'Pipeline preview',
      testid: 'pipeline-preview',
      card: (node, index) => [
        h('span', { class: 'step-icon', 'aria-hidden': 'true' }, String(index + 1)),
        h('div', { class: 'step-body' },
          h('h3', { class: 'step-name' }, stepLabel(node.type)),
          h('p', { class: 'step-timing' }, policy(node.spec))),
      ],
      decorate: (box, node) => {
        box.className = 'step step-pending step-preview';
        box.dataset.testid = `preview-step-${node.type}`;
      },
    });
    this.element = h('fieldset', { class: 'pipeline-picker', 'data-testid': 'upload-pipeline',
      hidden: true },
    h('legend', {}, 'Workflow'),
    h('div', { class: 'field' },
      h('label', { for: 'upload-type' }, 'Workflow type'),
      this.select,
      this.hint,
      h('p', { class: 'field-error', id: 'upload-type-error', 'data-testid': 'upload-type-error',
        hidden: true })),
    this.graph.root);
  }

  /** Ask the gateway for its pipelines; resolves when the choice is shown (or left out). */
  async load() {
    let answer;
    try {
      answer = await gateway.pipelines();
    } catch {
      return;
    }
    const pipelines = Array.isArray(answer?.pipelines) ? answer.pipelines : [];
    if (!pipelines.length) return;
    const current = this.select.value;
    this.pipelines = new Map(pipelines.map((p) => [p.type, p]));
    this.select.replaceChildren(...pipelines.map((p) => h('option', {
      value: p.type,
      selected: p.type === (current || answer.default_type) ? true : null,
    }, p.type === answer.default_type ? `${p.type} (default)` : p.type)));
    this.element.hidden = false;
    this.show();
  }

  /** The chosen type, or null when the gateway offered none (it then runs its default). */
  get value() {
    return this.pipelines.size ? this.select.value : null;
  }

  show() {
    const chosen = this.pipelines.get(this.select.value);
    if (!chosen) return;
    const specs = new Map((chosen.steps ?? []).map((s) => [s.type, s]));
    const nodes = graphOf({ definition: chosen, steps: [] })
      .map((node) => ({ ...node, spec: specs.get(node.type) }));
    this.hint.textContent = `${levelsText(nodes)} · version ${chosen.version ?? '—'}`;
    this.graph.render(nodes, (node) => JSON.stringify(node.spec ?? null));
  }

  destroy() {
    this.graph.destroy();
  }
}

function policy(spec) {
  if (!spec) return '';
  const parts = [];
  if (typeof spec.timeout === 'number') parts.push(`timeout ${Number(spec.timeout.toFixed(3))} s`);
  if (spec.max_attempts) parts.push(`${spec.max_attempts} attempt${spec.max_attempts > 1 ? 's' : ''}`);
  return parts.join(' · ');
}
