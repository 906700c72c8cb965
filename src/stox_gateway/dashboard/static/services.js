// Who is there to do the work: per step type, its connected services (consumers) and the
// steps waiting in its queue, from the `services` check of /health, polled every few seconds.
// Polled rather than pushed: the counts are not workflow updates (no seq, nothing to replay),
// and the gateway itself only counts every `workflow.services_interval`.

import { h } from './dom.js';
import { stepLabel } from './format.js';

const POLL_MS = 5000;

export function waitingMessage(type) {
  const article = /^[aeiou]/i.test(type) ? 'an' : 'a';
  return `waiting for ${article} ${type} service — none connected`;
}

export class Services extends EventTarget {
  constructor() {
    super();
    this.types = null; // step type → {consumers, ready}; null until the first answer
    this.timer = null;
  }

  start() {
    this.poll();
    return this;
  }

  async poll() {
    clearTimeout(this.timer);
    try {
      if (!document.hidden || this.types === null) {
        // 503 (database or bus away) still carries the last counts.
        const answer = await fetch('/health', { headers: { Accept: 'application/json' } });
        const types = (await answer.json())?.checks?.services?.types;
        if (types && typeof types === 'object') this.set(types);
      }
    } catch {
      // The connection badge tells about a gateway that is away; keep the last counts.
    } finally {
      this.timer = setTimeout(() => this.poll(), POLL_MS);
    }
  }

  set(types) {
    if (JSON.stringify(types) === JSON.stringify(this.types)) return;
    this.types = types;
    this.dispatchEvent(new Event('change'));
  }

  /** The "none connected" text for a step of `type`, or null. `fallback`: the status
   * answer's `waiting_for`, used until the first count arrives. */
  waitingFor(type, fallback) {
    if (this.types === null) return fallback?.message ?? null;
    const counts = this.types[type];
    return counts && counts.consumers === 0 ? waitingMessage(type) : null;
  }
}

/** A small table: each step type, its services and its waiting steps. */
export function servicesPanel(services) {
  const types = services.types;
  if (types === null) return h('p', { class: 'muted small' }, 'Counting services…');
  const names = Object.keys(types).sort();
  if (!names.length) return h('p', { class: 'muted small' }, 'No step types.');
  return h('table', { class: 'services-table' },
    h('caption', { class: 'sr-only' }, 'Services connected and steps waiting, per step type'),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Step type'),
      h('th', { scope: 'col', class: 'num' }, 'Services'),
      h('th', { scope: 'col', class: 'num' }, 'Waiting'))),
    h('tbody', {}, names.map((type) => {
      const { consumers, ready } = types[type];
      return h('tr', {
        'data-testid': `service-${type}`, 'data-consumers': String(consumers),
        'data-ready': String(ready), class: consumers ? null : 'service-missing',
      },
      h('th', { scope: 'row' }, stepLabel(type)),
      h('td', { class: 'num' }, consumers ? String(consumers) : 'none'),
      h('td', { class: 'num' }, String(ready)));
    })));
}
