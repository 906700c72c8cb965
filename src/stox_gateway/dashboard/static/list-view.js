// #/ — the workflows, a page at a time from the server (GET /api/v1/workflows: filters, search
// and the total are the server's), fetched again when the live socket reports a change.
// Bulk actions: "Retry all failed" (every failed one the filters match) and "Cancel selected",
// each after a confirmation that names how many.

import { ApiError, AuthRequired, gateway } from './api.js';
import { announce, h, renderIfChanged } from './dom.js';
import { STATUSES, ago, duration, price, statusLabel, stepLabel } from './format.js';
import { servicesPanel } from './services.js';

const PAGE_SIZES = [10, 25, 50, 100];
const SEARCH_DELAY_MS = 250; // a search waits for a pause in typing
const REFRESH_DELAY_MS = 300; // live changes arrive in bursts: one fetch per burst

export class ListView {
  constructor(app) {
    this.app = app;
    this.page = null; // the server's answer: { items, total, limit, offset }
    this.error = null;
    this.selected = new Set();
    this.confirming = null; // { action, count, body } while a confirmation shows
    this.busy = false;
    this.outcome = null;
    this.asked = 0; // the newest fetch's number: older answers are dropped
    this.timer = null;
    this.searchTimer = null;
  }

  mount() {
    const f = this.app.filters;
    f.limit ??= 25;
    f.offset ??= 0;
    this.statusSelect = h('select', {
      id: 'status-filter', 'data-testid': 'status-filter', onchange: () => this.filter(),
    },
    h('option', { value: '' }, 'All statuses'),
    STATUSES.map((status) => h('option', { value: status }, statusLabel(status))));
    this.statusSelect.value = f.status;
    this.search = h('input', {
      id: 'search', type: 'search', 'data-testid': 'search', placeholder: 'Name or category…',
      autocomplete: 'off', spellcheck: 'false',
      oninput: () => {
        clearTimeout(this.searchTimer);
        this.searchTimer = setTimeout(() => this.filter(), SEARCH_DELAY_MS);
      },
    });
    this.search.value = f.query;
    this.typeInput = h('input', {
      id: 'type-filter', type: 'text', 'data-testid': 'type-filter', placeholder: 'any',
      autocomplete: 'off', spellcheck: 'false', size: '14', onchange: () => this.filter(),
    });
    this.typeInput.value = f.type ?? '';
    this.fromInput = h('input', {
      id: 'from-filter', type: 'datetime-local', 'data-testid': 'from-filter',
      onchange: () => this.filter(),
    });
    this.fromInput.value = f.from ?? '';
    this.toInput = h('input', {
      id: 'to-filter', type: 'datetime-local', 'data-testid': 'to-filter',
      onchange: () => this.filter(),
    });
    this.toInput.value = f.to ?? '';
    this.sizeSelect = h('select', {
      id: 'page-size', 'data-testid': 'page-size',
      onchange: () => { f.limit = Number(this.sizeSelect.value); f.offset = 0; this.fetch(); },
    }, PAGE_SIZES.map((n) => h('option', { value: String(n) }, `${n} a page`)));
    this.sizeSelect.value = String(f.limit);
    this.summary = h('p', { class: 'summary muted', 'data-testid': 'summary', 'aria-live': 'polite' });
    this.bulk = h('div', { class: 'bulk', 'data-testid': 'bulk-actions' });
    this.body = h('tbody', { 'data-testid': 'workflow-rows' });
    this.selectAll = h('input', {
      type: 'checkbox', 'data-testid': 'select-all', 'aria-label': 'Select every row of this page',
      onchange: () => {
        for (const item of this.page?.items ?? []) {
          if (this.selectAll.checked) this.selected.add(item.id);
          else this.selected.delete(item.id);
        }
        this.render();
      },
    });
    this.pager = h('nav', { class: 'pager', 'aria-label': 'Pages', 'data-testid': 'pager' });
    this.empty = h('div', { class: 'empty', 'data-testid': 'empty-list', hidden: true });
    this.services = h('div', { class: 'card services', 'data-testid': 'services' });
    this.root = h('section', { class: 'view view-list', 'aria-labelledby': 'list-title' },
      h('div', { class: 'view-head' },
        h('h1', { id: 'list-title' }, 'Workflows'),
        h('a', { class: 'button button-primary', href: '#/new', 'data-testid': 'new-product' },
          'New product')),
      h('div', { class: 'toolbar', role: 'search' },
        field('status-filter', 'Status', this.statusSelect),
        field('search', 'Search products', this.search, 'field-grow'),
        field('type-filter', 'Type', this.typeInput),
        field('from-filter', 'Created from', this.fromInput),
        field('to-filter', 'Created before', this.toInput),
        this.summary),
      this.bulk,
      h('div', { class: 'table-wrap' },
        h('table', { class: 'workflows', 'data-testid': 'workflow-list' },
          h('caption', { class: 'sr-only' }, 'Workflows, newest first; updated live'),
          h('thead', {}, h('tr', {},
            h('th', { scope: 'col', class: 'check' }, this.selectAll),
            h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Picture')),
            h('th', { scope: 'col' }, 'Product'),
            h('th', { scope: 'col', class: 'num' }, 'Price'),
            h('th', { scope: 'col' }, 'Status'),
            h('th', { scope: 'col' }, 'Step'),
            h('th', { scope: 'col', class: 'num' }, 'Duration'),
            h('th', { scope: 'col', class: 'num' }, 'Age'))),
          this.body)),
      this.empty,
      h('div', { class: 'pager-row' }, this.pager, field('page-size', 'Rows', this.sizeSelect)),
      h('h2', {}, 'Services'),
      this.services);
    this.fetch();
    return this.root;
  }

  filter() {
    const f = this.app.filters;
    Object.assign(f, {
      status: this.statusSelect.value,
      query: this.search.value,
      type: this.typeInput.value.trim(),
      from: this.fromInput.value,
      to: this.toInput.value,
      offset: 0,
    });
    this.selected.clear();
    this.fetch();
  }

  /** The list's filters as the API names them (also the bulk actions' `filter`). */
  query() {
    const f = this.app.filters;
    const query = {};
    if (f.status) query.status = f.status;
    if (f.query?.trim()) query.search = f.query.trim();
    if (f.type) query.type = f.type;
    if (f.from) query.created_from = new Date(f.from).toISOString();
    if (f.to) query.created_to = new Date(f.to).toISOString();
    return query;
  }

  async fetch() {
    const asked = ++this.asked;
    const f = this.app.filters;
    const { search, ...rest } = this.query();
    const params = { ...rest, limit: String(f.limit), offset: String(f.offset) };
    if (search) params.q = search;
    try {
      const page = await gateway.find(params);
      if (asked !== this.asked) return;
      if (!page.items.length && page.total && f.offset) {
        // The page emptied (its rows moved on): show the last one there is.
        f.offset = Math.max(0, Math.floor((page.total - 1) / f.limit) * f.limit);
        this.fetch();
        return;
      }
      this.page = page;
      this.error = null;
    } catch (error) {
      if (asked !== this.asked || error instanceof AuthRequired) return;
      this.error = error instanceof ApiError ? error.message : String(error);
    }
    this.render();
  }

  changed() {
    // A workflow changed somewhere: fetch this page again, once per burst.
    if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.fetch();
      }, REFRESH_DELAY_MS);
    }
  }

  render() {
    const page = this.page ?? { items: [], total: 0, offset: 0 };
    const rows = page.items;
    const all = this.app.store.all();
    const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    for (const w of all) counts[w.status] = (counts[w.status] ?? 0) + 1;
    const parts = STATUSES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`);
    const total = `${page.total}${page.total_exact === false ? '+' : ''}`;
    const shown = rows.length
      ? `${page.offset + 1}–${page.offset + rows.length} of ${total}` : `0 of ${total}`;
    this.summary.textContent = this.error ? `Could not load the list: ${this.error}`
      : shown + (parts.length ? ` · live: ${parts.join(' · ')}` : '');
    const signature = JSON.stringify([rows.map((w) => [w.id, w.seq, w.status, w.thumbnail_url]),
      [...this.selected]]);
    renderIfChanged(this.body, signature, () => rows.map((w) => this.row(w)));
    this.selectAll.checked = rows.length > 0 && rows.every((w) => this.selected.has(w.id));
    this.empty.hidden = rows.length > 0 || this.page === null;
    if (!rows.length) {
      const filtered = Object.keys(this.query()).length > 0;
      this.empty.replaceChildren(filtered || page.total
        ? h('p', {}, 'No workflow matches these filters.')
        : h('p', {}, 'No workflows yet. ', h('a', { href: '#/new' }, 'Upload a product'),
          ' to start one.'));
    }
    this.renderPager(page);
    this.renderBulk();
    this.servicesChanged();
    this.tick();
  }

  row(workflow) {
    const name = workflow.name || '(unnamed product)';
    const checked = this.selected.has(workflow.id);
    return h('tr', {
      'data-testid': 'workflow-row', 'data-workflow-id': workflow.id,
      'data-status': workflow.status,
    },
    h('td', { class: 'check' }, h('input', {
      type: 'checkbox', 'data-testid': 'row-select', 'aria-label': `Select ${name}`, checked,
      onchange: (event) => {
        if (event.target.checked) this.selected.add(workflow.id);
        else this.selected.delete(workflow.id);
        this.render();
      },
    })),
    h('td', { class: 'row-thumb' }, workflow.thumbnail_url
      ? h('img', {
        src: workflow.thumbnail_url, alt: '', width: '48', height: '48', loading: 'lazy',
        'data-testid': 'row-thumbnail',
      })
      : h('div', { class: 'row-thumb-missing', 'aria-hidden': 'true' })),
    h('td', {},
      h('a', { class: 'row-link', href: `#/workflow/${encodeURIComponent(workflow.id)}`,
        'data-testid': 'workflow-link' }, name),
      h('div', { class: 'muted small' },
        h('span', { class: 'mono' }, workflow.id.slice(0, 8)),
        workflow.category ? ` · ${workflow.category}` : '')),
    h('td', { class: 'num', 'data-testid': 'row-price' },
      workflow.price === null || workflow.price === undefined ? '—'
        : price(workflow.price, workflow.currency)),
    h('td', {}, statusBadge(workflow.status, 'workflow-row-status')),
    h('td', { 'data-testid': 'workflow-row-step' }, stepCell(workflow)),
    h('td', { class: 'num muted', 'data-testid': 'row-duration' },
      duration(workflow.duration_seconds * 1000)),
    h('td', { class: 'num muted', 'data-age': workflow.created_at,
      title: workflow.created_at ?? '' }, ago(workflow.created_at)));
  }

  renderPager(page) {
    const { limit, offset } = this.app.filters;
    const pages = Math.max(1, Math.ceil(page.total / limit));
    const current = Math.floor(offset / limit) + 1;
    const go = (to) => {
      this.app.filters.offset = (to - 1) * limit;
      this.fetch();
    };
    const more = page.total_exact === false ? '+' : '';
    renderIfChanged(this.pager, JSON.stringify([pages, current, more]), () => [
      h('button', {
        type: 'button', class: 'button button-quiet', 'data-testid': 'page-prev',
        disabled: current <= 1, onclick: () => go(current - 1),
      }, '← Newer'),
      h('span', { class: 'muted', 'data-testid': 'page-number' }, `Page ${current} of ${pages}${more}`),
      h('button', {
        type: 'button', class: 'button button-quiet', 'data-testid': 'page-next',
        disabled: current >= pages && !more, onclick: () => go(current + 1),
      }, 'Older →'),
    ]);
  }

  renderBulk() {
    const selected = this.selected.size;
    const sig = JSON.stringify([this.confirming, this.busy, selected, this.outcome,
      this.app.filters.status]);
    renderIfChanged(this.bulk, sig, () => {
      if (this.confirming) {
        const { action, count } = this.confirming;
        const what = action === 'retry'
          ? `Retry ${count} failed workflow${count === 1 ? '' : 's'} matching the filters?`
          : `Cancel ${count} selected workflow${count === 1 ? '' : 's'}? This cannot be undone.`;
        return h('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirm bulk action',
          'data-testid': 'bulk-confirmation' },
        h('span', { 'data-testid': 'bulk-confirm-text' }, what),
        h('button', {
          type: 'button', class: `button ${action === 'retry' ? 'button-primary' : 'button-danger'}`,
          'data-testid': 'bulk-confirm', disabled: this.busy, onclick: () => this.runBulk(),
        }, this.busy ? 'Working…' : `Yes, ${action} ${count}`),
        h('button', {
          type: 'button', class: 'button button-quiet', 'data-testid': 'bulk-dismiss',
          disabled: this.busy, onclick: () => { this.confirming = null; this.render(); },
        }, 'No'));
      }
      return [
        h('button', {
          type: 'button', class: 'button button-quiet', 'data-testid': 'retry-all-failed',
          disabled: this.app.filters.status !== '' && this.app.filters.status !== 'failed',
          onclick: () => this.confirmRetry(),
        }, 'Retry all failed'),
        h('button', {
          type: 'button', class: 'button button-danger-quiet', 'data-testid': 'cancel-selected',
          disabled: selected === 0,
          onclick: () => {
            this.confirming = { action: 'cancel', count: selected,
              body: { ids: [...this.selected] } };
            this.render();
          },
        }, selected ? `Cancel selected (${selected})` : 'Cancel selected'),
        this.outcome ? h('span', { class: 'muted', 'data-testid': 'bulk-outcome' }, this.outcome)
          : null,
      ];
    });
  }

  async confirmRetry() {
    // The count the confirmation names: the server's total of failed ones under the filters.
    const { search, ...rest } = { ...this.query(), status: 'failed' };
    const params = { ...rest, limit: '1', offset: '0' };
    if (search) params.q = search;
    try {
      const { total } = await gateway.find(params);
      this.confirming = { action: 'retry', count: total,
        body: { filter: { ...this.query(), status: 'failed' } } };
    } catch (error) {
      this.outcome = error instanceof ApiError ? error.message : String(error);
    }
    this.render();
  }

  async runBulk() {
    const { action, body } = this.confirming;
    this.busy = true;
    this.render();
    try {
      const answer = await gateway.bulk(action, body);
      const done = action === 'retry' ? answer.retried : answer.cancelled;
      this.outcome = `${action === 'retry' ? 'Retried' : 'Cancelled'} ${done}`
        + (answer.skipped ? `, skipped ${answer.skipped}` : '')
        + (answer.not_found ? `, ${answer.not_found} not found` : '')
        + (answer.limited ? ' (more remain: run it again)' : '');
      announce(this.outcome);
      if (action === 'cancel') this.selected.clear();
    } catch (error) {
      if (!(error instanceof AuthRequired)) {
        this.outcome = error instanceof ApiError ? error.message : String(error);
      }
    } finally {
      this.busy = false;
      this.confirming = null;
      this.fetch();
    }
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
    clearTimeout(this.timer);
    clearTimeout(this.searchTimer);
    this.asked += 1; // an answer still on its way is not drawn
  }
}

function field(id, label, control, extra = '') {
  return h('div', { class: `field field-inline ${extra}` }, h('label', { for: id }, label), control);
}

function stepCell(workflow) {
  if (workflow.failed_step) {
    const { type, reason } = workflow.failed_step;
    return h('div', { class: 'row-failure', 'data-testid': 'row-failure' },
      h('strong', {}, type ? stepLabel(type) : 'Workflow'),
      reason ? h('div', { class: 'small', title: reason }, reason) : null);
  }
  // Parallel branches run at once: name every running step, not only the first.
  const running = workflow.running_steps ?? [];
  if (running.length) return running.map(stepLabel).join(' · ');
  if (workflow.status === 'processing' || workflow.status === 'pending') {
    return h('span', { class: 'muted' },
      `${workflow.steps_completed} of ${workflow.steps_total} done`);
  }
  return h('span', { class: 'muted' }, '—');
}

export function statusBadge(status, testid) {
  return h('span', { class: `badge badge-${status}`, 'data-testid': testid }, statusLabel(status));
}
