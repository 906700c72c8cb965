// #/workflow/<id> — one workflow: its pipeline, each step's result, its history, and the
// Cancel / Retry actions. Follows the workflow over a socket of its own (from since=0, so the
// history is complete; after a drop it resumes from the last seq it saw).

import { ApiError, AuthRequired, gateway } from './api.js';
import { announce, h, renderIfChanged } from './dom.js';
import {
  ago, clock, dateTime, duration, mediaUrl, parseTime, price, statusLabel, stepLabel,
} from './format.js';
import { statusBadge } from './list-view.js';
import { graphOf, PipelineGraph } from './pipeline-graph.js';
import { servicesPanel } from './services.js';
import { isEnded } from './store.js';

const STEP_STATE_TEXT = {
  pending: 'Pending', running: 'Running', completed: 'Completed', failed: 'Failed',
};
const UPDATE_TEXT = {
  workflow_started: 'Workflow started',
  step_started: 'Step started',
  step_completed: 'Step completed',
  step_retrying: 'Step retrying',
  workflow_completed: 'Workflow completed',
  workflow_failed: 'Workflow failed',
  workflow_cancelled: 'Workflow cancelled',
  step_progress: 'Progress',
};
const IMAGE_PATH = /^[\w./-]+\.(jpe?g|png|gif|webp|bmp)$/i;

export class WorkflowView {
  constructor(app, id) {
    this.app = app;
    this.id = id;
    this.feed = null;
    this.confirming = false;
    this.busy = false;
    this.actionError = null;
    this.reconcileTimer = null;
    this.lastStatus = null;
  }

  mount() {
    this.title = h('h1', { 'data-testid': 'workflow-title' }, 'Workflow');
    this.badge = h('span', { class: 'badge', 'data-testid': 'workflow-status' }, '…');
    this.meta = h('p', { class: 'muted meta', 'data-testid': 'workflow-meta' });
    this.actions = h('div', { class: 'actions', 'data-testid': 'workflow-actions' });
    this.notice = h('div', { class: 'notices' });
    this.graph = new PipelineGraph({
      card: (node, index) => {
        const step = node.step ?? pendingStep(node.type);
        return stepCard(step, index, this.wf, this.waiting(step));
      },
      decorate: (box, node) => {
        const step = node.step ?? pendingStep(node.type);
        box.className = `step step-${step.status}`;
        box.dataset.testid = `step-${step.type}`;
        box.dataset.state = step.status;
        box.dataset.attempts = String(step.attempts);
      },
    });
    this.pipeline = this.graph.root;
    this.results = h('div', { class: 'results', 'data-testid': 'results' });
    this.product = h('div', { class: 'card product', 'data-testid': 'product' });
    this.timeline = h('ol', { class: 'timeline', 'data-testid': 'timeline' });
    this.services = h('div', { class: 'card services', 'data-testid': 'services' });
    this.body = h('div', { class: 'workflow-body' },
      h('div', { class: 'workflow-head' },
        h('div', { class: 'title-row' }, this.title, this.badge),
        this.actions),
      this.meta,
      this.notice,
      h('h2', { class: 'sr-only' }, 'Pipeline'),
      this.pipeline,
      h('div', { class: 'columns' },
        h('div', { class: 'column-main' },
          h('h2', {}, 'Results'), this.results),
        h('aside', { class: 'column-side', 'aria-label': 'Product and history' },
          h('h2', {}, 'Product'), this.product,
          h('h2', {}, 'Services'), this.services,
          h('h2', { id: 'timeline-title' }, 'Activity'),
          h('div', { class: 'card' }, this.timeline))));
    this.root = h('section', {
      class: 'view view-workflow', 'data-testid': 'workflow-view', 'data-workflow-id': this.id,
    },
    h('a', { class: 'back', href: '#/' }, '← All workflows'),
    this.body);
    this.render();
    gateway.status(this.id).then(
      (workflow) => this.app.store.put(workflow),
      (error) => {
        if (error.status === 404) this.notFound();
      },
    );
    this.feed = this.app.workflowFeed(this.id, { onGone: () => this.notFound() }).start();
    return this.root;
  }

  unmount() {
    this.feed?.stop();
    this.feed = null;
    clearTimeout(this.reconcileTimer);
    this.graph.destroy();
  }

  servicesChanged() {
    this.render();
  }

  /** The "none connected" text of a step that is yet to run, or null. */
  waiting(step) {
    if (!this.wf || isEnded(this.wf) || !['pending', 'running'].includes(step.status)) return null;
    return this.app.services.waitingFor(step.type, step.waiting_for);
  }

  changed({ id, message }) {
    if (id !== this.id && id !== null) return;
    this.render();
    if (message) this.reconcile();
  }

  /** The updates say what changed; the status answer has every field (deadlines and all). */
  reconcile() {
    clearTimeout(this.reconcileTimer);
    this.reconcileTimer = setTimeout(() => {
      gateway.status(this.id).then((w) => this.app.store.put(w), () => {});
    }, 300);
  }

  notFound() {
    const feed = this.feed;
    this.feed = null; // not part of the connection state any more
    feed?.stop();
    this.body.replaceChildren(
      h('h1', { tabindex: '-1' }, 'Workflow not found'),
      h('div', { class: 'notice', 'data-testid': 'not-found' },
        h('p', {}, 'There is no workflow ', h('code', {}, this.id),
          ' — or it belongs to someone else.')));
  }

  render() {
    const wf = this.app.store.get(this.id);
    if (!wf) {
      this.meta.textContent = 'Loading…';
      return;
    }
    const name = wf.product?.name || '(unnamed product)';
    if (this.title.textContent !== name) {
      this.title.textContent = name;
      document.title = `${name} · Stox Gateway`;
    }
    this.badge.className = `badge badge-${wf.status}`;
    this.badge.dataset.status = wf.status;
    this.badge.textContent = statusLabel(wf.status);
    if (this.lastStatus && this.lastStatus !== wf.status) {
      announce(`Workflow ${statusLabel(wf.status).toLowerCase()}`);
    }
    this.lastStatus = wf.status;
    renderIfChanged(this.meta, JSON.stringify([wf.id, wf.created_at, wf.completed_at,
      wf.correlation_id]), () => meta(wf));
    this.renderActions(wf);
    renderIfChanged(this.notice,
      JSON.stringify([wf.status, wf.error, wf.error_message, this.actionError]),
      () => notices(wf, this.actionError));
    const steps = wf.steps ?? [];
    this.wf = wf;
    this.graph.render(graphOf(wf), (node) => JSON.stringify([node.step?.status,
      node.step?.attempts, node.step?.max_attempts, node.step?.started_at,
      node.step?.completed_at, node.step?.error, wf.status,
      this.waiting(node.step ?? pendingStep(node.type))]));
    if (this.results.children.length !== steps.length) {
      this.results.replaceChildren(...steps.map(() => h('section', { class: 'card result' })));
    }
    steps.forEach((step, index) => {
      const panel = this.results.children[index];
      const waiting = step.status === 'running' ? this.waiting(step) : null;
      const resultSig = JSON.stringify([step.status, step.result, step.error,
        step.error_message, wf.status, waiting,
        step.status === 'running' ? step.progress?.seq : null]);
      if (renderIfChanged(panel, resultSig, () => resultPanel(step, wf, waiting))) {
        panel.dataset.testid = `step-result-${step.type}`;
        panel.dataset.state = step.status;
      }
    });
    renderIfChanged(this.product, JSON.stringify(wf.product ?? {}), () => product(wf));
    renderIfChanged(this.services, JSON.stringify(this.app.services.types),
      () => servicesPanel(this.app.services));
    const history = this.app.store.timeline(this.id);
    renderIfChanged(this.timeline, JSON.stringify(history.map((u) => u.seq)),
      () => (history.length ? history.map(timelineItem)
        : h('li', { class: 'muted' }, 'Waiting for updates…')));
    this.tick();
  }

  renderActions(wf) {
    const sig = JSON.stringify([wf.status, this.confirming, this.busy]);
    renderIfChanged(this.actions, sig, () => {
      if (!isEnded(wf)) {
        if (this.confirming) {
          return h('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirm cancel' },
            h('span', {}, 'Cancel this workflow? This cannot be undone.'),
            h('button', {
              type: 'button', class: 'button button-danger', 'data-testid': 'cancel-confirm',
              disabled: this.busy, onclick: () => this.act('cancel'),
            }, 'Yes, cancel it'),
            h('button', {
              type: 'button', class: 'button button-quiet', 'data-testid': 'cancel-dismiss',
              disabled: this.busy,
              onclick: () => {
                this.confirming = false;
                this.render();
                this.actions.querySelector('button')?.focus();
              },
            }, 'Keep it running'));
        }
        return h('button', {
          type: 'button', class: 'button button-danger-quiet', 'data-testid': 'cancel-button',
          onclick: () => {
            this.confirming = true;
            this.render();
            this.actions.querySelector('[data-testid="cancel-confirm"]')?.focus();
          },
        }, 'Cancel workflow');
      }
      if (wf.status === 'failed') {
        return h('button', {
          type: 'button', class: 'button button-primary', 'data-testid': 'retry-button',
          disabled: this.busy, onclick: () => this.act('retry'),
        }, this.busy ? 'Retrying…' : 'Retry from the failed step');
      }
      return null;
    });
  }

  async act(action) {
    this.busy = true;
    this.actionError = null;
    this.render();
    try {
      const workflow = await gateway[action](this.id);
      this.app.store.put(workflow);
      announce(action === 'cancel' ? 'Workflow cancelled' : 'Retry started');
    } catch (error) {
      if (!(error instanceof AuthRequired)) {
        this.actionError = error instanceof ApiError ? error.message : String(error);
        this.reconcile();
      }
    } finally {
      this.busy = false;
      this.confirming = false;
      this.render();
    }
  }

  tick() {
    const now = Date.now();
    for (const el of this.root.querySelectorAll('[data-running-since]')) {
      const since = parseTime(el.dataset.runningSince);
      el.textContent = since === null ? '' : since > now
        ? `next attempt in ${duration(since - now)}`
        : `running for ${duration(now - since)}`;
    }
    for (const el of this.root.querySelectorAll('[data-age]')) {
      el.textContent = ago(el.dataset.age, now);
    }
  }
}

function meta(wf) {
  const took = wf.completed_at
    ? ` · took ${duration(parseTime(wf.completed_at) - parseTime(wf.created_at))}` : '';
  return [
    'Created ', h('time', { datetime: wf.created_at, title: dateTime(wf.created_at) },
      h('span', { 'data-age': wf.created_at }, ago(wf.created_at))),
    took,
    ' · ID ', h('code', { 'data-testid': 'workflow-id' }, wf.id),
    wf.correlation_id ? [' · correlation ', h('code', {}, wf.correlation_id)] : null,
  ];
}

function notices(wf, actionError) {
  const out = [];
  if (wf.status === 'failed' && wf.error) {
    out.push(h('div', { class: 'notice notice-error', 'data-testid': 'workflow-error' },
      h('strong', {}, 'Failed: '), failureText(wf),
      technicalDetail(wf, 'workflow-error-detail')));
  }
  if (wf.status === 'cancelled') {
    out.push(h('div', { class: 'notice', 'data-testid': 'workflow-error' },
      'This workflow was cancelled; reports that arrive late are refused.'));
  }
  if (wf.status === 'completed') {
    out.push(h('div', { class: 'notice notice-ok', 'data-testid': 'workflow-done' },
      'Every step completed.'));
  }
  if (actionError) {
    out.push(h('div', { class: 'notice notice-error', role: 'alert',
      'data-testid': 'action-error' }, actionError));
  }
  return out;
}

/** The failure in words (the gateway's `error_message`), never a Python repr. */
function failureText(item) {
  return item.error_message ?? item.error ?? '';
}

/** The technical detail, folded away: for whoever runs the services, not the shop. */
function technicalDetail(item, testid) {
  const detail = item.error_detail;
  if (!detail || detail === item.error_message) return null;
  return h('details', { class: 'error-detail', 'data-testid': testid },
    h('summary', {}, 'Technical detail'),
    h('pre', { class: 'mono small' }, detail));
}

function pendingStep(type) {
  return { type, status: 'pending', attempts: 0, max_attempts: null };
}

function stepCard(step, index, wf, waiting) {
  const icon = { completed: '✓', failed: '✕' }[step.status] ?? String(index + 1);
  const state = step.status === 'failed' && step.error === 'cancelled'
    ? 'Stopped (cancelled)' : STEP_STATE_TEXT[step.status] ?? step.status;
  const started = parseTime(step.started_at);
  const ended = parseTime(step.completed_at);
  let timing = null;
  if (step.status === 'running' && started !== null && wf.status === 'processing') {
    timing = h('p', { class: 'step-timing', 'data-running-since': step.started_at });
  } else if (started !== null && ended !== null) {
    timing = h('p', { class: 'step-timing' },
      `${clock(step.started_at)} → ${clock(step.completed_at)} · ${duration(ended - started)}`);
  } else if (started !== null) {
    timing = h('p', { class: 'step-timing' }, `started ${clock(step.started_at)}`);
  }
  return [
    h('span', { class: 'step-icon', 'aria-hidden': 'true' }, icon),
    h('div', { class: 'step-body' },
      h('h3', { class: 'step-name' }, stepLabel(step.type)),
      h('p', { class: 'step-state', 'data-testid': `step-state-${step.type}` }, state),
      step.attempts
        ? h('p', { class: 'step-attempts', 'data-testid': `step-attempts-${step.type}` },
          `Attempt ${step.attempts}${step.max_attempts ? ` of ${step.max_attempts}` : ''}`)
        : null,
      timing,
      waiting
        ? h('p', { class: 'step-waiting', 'data-testid': `step-waiting-${step.type}` }, waiting)
        : null),
  ];
}

function resultPanel(step, wf, waiting) {
  const heading = h('h3', {}, stepLabel(step.type));
  const parts = [heading];
  if (step.error && step.status === 'failed' && wf.status === 'failed'
    && step.error !== 'cancelled') {
    // The error is the workflow's, said once in the notice at the top of the page.
    parts.push(h('p', { class: 'muted', 'data-testid': `step-error-${step.type}` },
      'This step failed: see the error at the top of the page.'));
  } else if (step.error && step.status !== 'completed') {
    parts.push(h('div', {
      class: step.status === 'failed' ? 'notice notice-error' : 'notice notice-warn',
      'data-testid': `step-error-${step.type}`,
    }, h('strong', {}, step.status === 'failed' ? 'Error: ' : 'Last attempt failed: '),
    failureText(step), technicalDetail(step, `step-error-detail-${step.type}`)));
  }
  if (step.status === 'completed') {
    parts.push(renderResult(step.type, step.result ?? {}));
  } else if (step.status === 'running' && step.progress) {
    if (waiting) parts.push(h('p', { class: 'notice notice-warn' }, waiting));
    parts.push(...progressPanel(step));
  } else if (step.status === 'running' && waiting) {
    // Not "working on it": nothing is, until a service of this type connects.
    parts.push(h('p', { class: 'notice notice-warn' }, waiting));
  } else if (step.status === 'running') {
    parts.push(h('p', { class: 'muted' }, 'Working on it…'));
  } else if (step.status === 'pending') {
    parts.push(h('p', { class: 'muted' },
      isEnded(wf) ? 'Not run.' : 'Waiting for the steps before it.'));
  }
  return parts;
}

// A running step's latest report (DESIGN §11): how far, what it says, and what it has made
// so far, drawn as its result will be (thumbnails one by one, the copy filling in).
function progressPanel(step) {
  const { fraction, message, partial } = step.progress;
  const parts = [];
  if (typeof fraction === 'number') {
    const percent = Math.round(Math.min(Math.max(fraction, 0), 1) * 100);
    parts.push(h('progress', {
      class: 'step-progress', max: '100', value: String(percent),
      'aria-label': `${stepLabel(step.type)}: ${percent}%`,
      'data-testid': `step-progress-${step.type}`,
    }));
  }
  parts.push(h('p', { class: 'muted', 'data-testid': `step-progress-message-${step.type}` },
    message || 'Working on it…'));
  if (partial && typeof partial === 'object' && Object.keys(partial).length) {
    parts.push(h('div', { class: 'partial', 'data-testid': `step-partial-${step.type}` },
      renderPartial(step.type, partial)));
  }
  return parts;
}

function renderPartial(type, partial) {
  if (type === 'image_processing' && Array.isArray(partial.thumbnails)) {
    return h('div', { class: 'thumbs', 'data-testid': 'thumbnails' },
      partial.thumbnails.map((path) => thumbnail(path, path, [String(path)])));
  }
  return renderResult(type, partial);
}

function renderResult(type, result) {
  if (!result || !Object.keys(result).length) {
    return h('p', { class: 'muted' }, 'The service returned no data.');
  }
  if (type === 'image_processing') return imageResult(result);
  if (type === 'ai_enhancement') return aiResult(result);
  if (type === 'seo_generation') return seoResult(result);
  return h('pre', { class: 'code' }, JSON.stringify(result, null, 2));
}

function imageResult(result) {
  const images = Array.isArray(result.images) ? result.images : [];
  const figures = images.length
    ? images.map((image) => thumbnail(image.thumbnail, image.source, [
      image.source,
      h('span', { class: 'muted' },
        [image.width && image.height ? `${image.width}×${image.height}` : null, image.format]
          .filter(Boolean).join(' · ')),
    ]))
    : (result.processed_images ?? []).map((path) => thumbnail(path, path, [path]));
  return [
    h('p', { class: 'muted' }, `${result.count ?? figures.length} image(s) processed`,
      result.processing_time ? ` in ${result.processing_time}` : ''),
    h('div', { class: 'thumbs', 'data-testid': 'thumbnails' }, figures),
  ];
}

function thumbnail(path, source, caption) {
  const showable = typeof path === 'string' && IMAGE_PATH.test(path) && !path.includes('..');
  return h('figure', { class: 'thumb' },
    showable
      ? h('img', {
        src: mediaUrl(path), alt: `Thumbnail of ${source}`, 'data-testid': 'thumbnail',
        decoding: 'async',
      })
      : h('div', { class: 'thumb-missing' }, 'no preview'),
    h('figcaption', {}, caption.map((c) => (typeof c === 'string' ? h('span', {}, c) : c))));
}

function aiResult(result) {
  return h('div', { class: 'ai', 'data-testid': 'ai-result' },
    result.title ? h('h4', { 'data-testid': 'ai-title' }, result.title) : null,
    result.enhanced_description
      ? h('p', { class: 'prose', 'data-testid': 'ai-description' }, result.enhanced_description)
      : null,
    list('Highlights', result.highlights, (item) => h('li', {}, item)),
    chips('Tags', result.tags));
}

function seoResult(result) {
  const row = (label, value, extra) => (value === undefined || value === null ? null : [
    h('dt', {}, label), h('dd', {}, value, extra ?? null)]);
  const chars = (text) => h('span', { class: 'muted small' }, ` (${String(text).length} chars)`);
  return h('div', { class: 'seo', 'data-testid': 'seo-result' },
    h('dl', { class: 'fields' },
      row('Slug', result.slug !== undefined ? h('code', {}, result.slug) : undefined),
      row('Meta title', result.meta_title, result.meta_title ? chars(result.meta_title) : null),
      row('Meta description', result.meta_description,
        result.meta_description ? chars(result.meta_description) : null)),
    chips('Keywords', result.keywords),
    result.json_ld ? h('details', { class: 'json-ld', open: true },
      h('summary', {}, 'JSON-LD'),
      h('pre', { class: 'code', 'data-testid': 'json-ld' },
        JSON.stringify(result.json_ld, null, 2))) : null);
}

function list(label, items, render) {
  if (!Array.isArray(items) || !items.length) return null;
  return [h('h5', {}, label), h('ul', { class: 'bullets' }, items.map(render))];
}

function chips(label, items) {
  if (!Array.isArray(items) || !items.length) return null;
  return [h('h5', {}, label),
    h('ul', { class: 'chips', 'aria-label': label }, items.map((i) => h('li', {}, i)))];
}

function product(wf) {
  const p = wf.product ?? {};
  const images = Array.isArray(p.images) ? p.images : [];
  return [
    p.description ? h('p', { class: 'prose' }, p.description) : null,
    h('dl', { class: 'fields' },
      h('dt', {}, 'Category'), h('dd', {}, p.category || '—'),
      h('dt', {}, 'Price'), h('dd', { 'data-testid': 'product-price' }, price(p.price, p.currency)),
      h('dt', {}, 'Images'),
      h('dd', {}, images.length ? h('ul', { class: 'plain' }, images.map((ref) => h('li', {},
        /^https?:\/\//i.test(ref)
          ? h('a', { href: ref, rel: 'noopener noreferrer', target: '_blank' }, ref)
          : h('a', { href: mediaUrl(ref), target: '_blank' }, ref)))) : 'none')),
  ];
}

function timelineItem(update) {
  const data = update.data ?? {};
  const step = data.step_type ? stepLabel(data.step_type) : null;
  let detail = null;
  if (update.type === 'step_retrying') {
    detail = `attempt ${data.attempt}${data.max_attempts ? ` of ${data.max_attempts}` : ''}`
      + (data.manual ? ' (retry requested)' : '')
      + (data.error ? ` — ${data.error_message ?? data.error}` : '');
  } else if (update.type === 'step_progress') {
    const percent = typeof data.fraction === 'number' ? `${Math.round(data.fraction * 100)}%` : '';
    detail = [percent, data.message].filter(Boolean).join(' — ') || null;
  }
  // workflow_failed: its reason is the notice at the top of the page, said once.
  return h('li', {
    class: `event event-${update.type}`, 'data-seq': String(update.seq),
    'data-type': update.type,
  },
  h('span', { class: 'event-seq mono' }, `#${update.seq}`),
  h('span', { class: 'event-text' },
    h('strong', {}, UPDATE_TEXT[update.type] ?? update.type),
    step ? ` · ${step}` : '',
    detail ? h('span', { class: 'event-detail' }, detail) : null),
  h('time', { class: 'muted small', datetime: update.timestamp }, clock(update.timestamp)));
}
