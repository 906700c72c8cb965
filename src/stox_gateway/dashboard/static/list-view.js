// #/ — every workflow the user may see, newest first, kept live by the store.

import { gateway } from './api.js';
import { h, renderIfChanged } from './dom.js';
import { STATUSES, ago, statusLabel, stepLabel } from './format.js';
import { servicesPanel } from './services.js';

export class ListView {
  constructor(app) {
    this.app = app;
    this.frame = null;
  }

  mount() {
    const { filters } = this.app;
    this.statusSelect = h('select', {
      id: 'status-filter', 'data-testid': 'status-filter', onchange: () => this.filter(),
    },
    h('option', { value: '' }, 'All statuses'),
    STATUSES.map((status) => h('option', { value: status }, statusLabel(status))));
    this.statusSelect.value = filters.status;
    this.search = h('input', {
      id: 'search', type: 'search', 'data-testid': 'search', placeholder: 'Product name…',
      autocomplete: 'off', spellcheck: 'false', oninput: () => this.filter(),
    });
    this.search.value = filters.query;
    this.summary = h('p', { class: 'summary muted', 'data-testid': 'summary' });
    this.body = h('tbody', { 'data-testid': 'workflow-rows' });
    this.empty = h('div', { class: 'empty', 'data-testid': 'empty-list', hidden: true });
    this.services = h('div', { class: 'card services', 'data-testid': 'services' });
    this.root = h('section', { class: 'view view-list', 'aria-labelledby': 'list-title' },
      h('div', { class: 'view-head' },
        h('h1', { id: 'list-title' }, 'Workflows'),
        h('a', { class: 'button button-primary', href: '#/new', 'data-testid': 'new-product' },
          'New product')),
      h('div', { class: 'toolbar', role: 'search' },
        h('div', { class: 'field field-inline' },
          h('label', { for: 'status-filter' }, 'Status'), this.statusSelect),
        h('div', { class: 'field field-inline field-grow' },
          h('label', { for: 'search' }, 'Search products'), this.search),
        this.summary),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'workflows', 'data-testid': 'workflow-list' },
          h('caption', { class: 'sr-only' }, 'Workflows, newest first; updated live'),
          h('thead', {}, h('tr', {},
            h('th', { scope: 'col' }, 'Product'),
            h('th', { scope: 'col' }, 'Status'),
            h('th', { scope: 'col' }, 'Current step'),
            h('th', { scope: 'col' }, 'Pipeline'),
            h('th', { scope: 'col', class: 'num' }, 'Age'))),
          this.body)),
      this.empty,
      h('h2', {}, 'Services'),
      this.services);
    this.render();
    return this.root;
  }

  filter() {
    const status = this.statusSelect.value;
    const changedStatus = status !== this.app.filters.status;
    this.app.filters = { status, query: this.search.value };
    if (changedStatus && status) {
      // The socket's snapshot holds the newest 100: fetch older ones of this status too.
      gateway.list({ status }).then(
        (workflows) => workflows.forEach((w) => this.app.store.put(w)),
        () => {},
      );
    }
    this.render();
  }

  changed() {
    // Many updates can arrive in one burst: draw once per frame.
    if (this.frame === null) {
      this.frame = requestAnimationFrame(() => {
        this.frame = null;
        this.render();
      });
    }
  }

  visible() {
    const { status, query } = this.app.filters;
    const needle = query.trim().toLowerCase();
    return this.app.store.all()
      .filter((w) => !status || w.status === status)
      .filter((w) => !needle
        || String(w.product?.name ?? '').toLowerCase().includes(needle)
        || w.id.startsWith(needle))
      .sort((a, b) => (Date.parse(b.created_at) || 0) - (Date.parse(a.created_at) || 0)
        || b.id.localeCompare(a.id));
  }

  render() {
    const all = this.app.store.all();
    const rows = this.visible();
    const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    for (const w of all) counts[w.status] = (counts[w.status] ?? 0) + 1;
    const parts = STATUSES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`);
    this.summary.textContent = `${rows.length} shown of ${all.length}`
      + (parts.length ? ` · ${parts.join(' · ')}` : '');
    const signature = JSON.stringify(rows.map((w) => [w.id, w.seq, w.status]));
    renderIfChanged(this.body, signature, () => rows.map(row));
    this.empty.hidden = rows.length > 0;
    if (!rows.length) {
      this.empty.replaceChildren(all.length
        ? h('p', {}, 'No workflow matches these filters.')
        : h('p', {}, 'No workflows yet. ', h('a', { href: '#/new' }, 'Upload a product'),
          ' to start one.'));
    }
    this.servicesChanged();
    this.tick();
  }

  servicesChanged() {
    renderIfChanged(this.services, JSON.stringify(this.app.services.types),
      () => servicesPanel(this.app.services));
  }

  tick() {
    const now = Date.now();
    for (const cell of this.body.querySelectorAll('[data-age]')) {
      cell.textContent = ago(cell.dataset.age, now);
    }
  }

  unmount() {
    if (this.frame !== null) cancelAnimationFrame(this.frame);
  }
}

function row(workflow) {
  const name = workflow.product?.name || '(unnamed product)';
  return h('tr', {
    'data-testid': 'workflow-row', 'data-workflow-id': workflow.id, 'data-status': workflow.status,
  },
  h('td', {},
    h('a', { class: 'row-link', href: `#/workflow/${encodeURIComponent(workflow.id)}`,
      'data-testid': 'workflow-link' }, name),
    h('div', { class: 'muted mono small' }, workflow.id.slice(0, 8))),
  h('td', {}, statusBadge(workflow.status, 'workflow-row-status')),
  h('td', { 'data-testid': 'workflow-row-step' }, currentSteps(workflow)),
  h('td', {}, progress(workflow.steps ?? [])),
  h('td', { class: 'num muted', 'data-age': workflow.created_at,
    title: workflow.created_at ?? '' }, ago(workflow.created_at)));
}

function currentSteps(workflow) {
  // Parallel branches run at once: name every running step, not only the first.
  const running = workflow.status === 'processing'
    ? (workflow.steps ?? []).filter((s) => s.status === 'running') : [];
  if (running.length > 1) return running.map((s) => stepLabel(s.type)).join(' · ');
  return workflow.current_step ? stepLabel(workflow.current_step)
    : h('span', { class: 'muted' }, '—');
}

export function statusBadge(status, testid) {
  return h('span', { class: `badge badge-${status}`, 'data-testid': testid }, statusLabel(status));
}

function progress(steps) {
  const done = steps.filter((s) => s.status === 'completed').length;
  return h('span', {
    class: 'dots', role: 'img',
    'aria-label': `${done} of ${steps.length} steps completed`,
  }, steps.map((s) => h('span', {
    class: `dot dot-${s.status}`, title: `${stepLabel(s.type)}: ${s.status}`,
  })));
}
