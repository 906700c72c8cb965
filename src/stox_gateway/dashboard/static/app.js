// The dashboard: hash routes, the live connection to /ws, and the views.
//
//   #/                 the workflows, live (ListView)
//   #/new              the upload form (UploadView)
//   #/workflow/<id>    one workflow's pipeline, results and history (WorkflowView)
//
// One WebSocket carries every workflow the user may see (its snapshot seeds the list; after a
// reconnect a fresh snapshot replaces what is older). A workflow page adds a socket of its
// own that starts from `since=0` (the whole history) and, after a drop, resumes from the last
// seq it saw. The store folds every message in by seq, so nothing counts twice.

import { AuthRequired, events as apiEvents, gateway, session, socketUrl } from './api.js';
import { announce } from './dom.js';
import { Feed } from './live.js';
import { ListView } from './list-view.js';
import { LoginView } from './login-view.js';
import { Services } from './services.js';
import { Store } from './store.js';
import { UploadView } from './upload-view.js';
import { WorkflowView } from './workflow-view.js';

const CONNECTION_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  stopped: 'Offline',
  signedOut: 'Signed out',
};

class App {
  constructor() {
    this.store = new Store();
    this.main = document.getElementById('main');
    this.view = null;
    this.feed = null; // every workflow
    this.signedOut = false;
    this.refreshing = new Map(); // workflow id → promise of a status fetch
    this.filters = { status: '', query: '' };
    this.positions = new Map(); // workflow id → last seq its own socket delivered
    this.services = new Services(); // consumers and waiting steps per step type (/health)
  }

  async start() {
    this.store.addEventListener('change', (event) => this.view?.changed?.(event.detail));
    this.services.addEventListener('change', () => this.view?.servicesChanged?.());
    this.services.start();
    this.store.addEventListener('gap', (event) => this.refresh(event.detail.id));
    apiEvents.addEventListener('auth-required', () => this.requireLogin());
    apiEvents.addEventListener('session', () => this.showUser());
    window.addEventListener('hashchange', () => this.route());
    document.querySelector('[data-testid="sign-out"]').addEventListener('click', () => {
      session.clear();
      this.requireLogin();
    });
    setInterval(() => this.view?.tick?.(), 1000);
    this.showUser();
    if (await this.connect()) this.route();
  }

  /** Load the list (which tells whether a login is needed), then open the live socket. */
  async connect() {
    try {
      for (const workflow of await gateway.list()) this.store.put(workflow);
    } catch (error) {
      if (error instanceof AuthRequired) return false; // requireLogin() already ran
      this.setConnection('stopped');
      this.show(null);
      this.main.replaceChildren(errorPanel(error));
      return false;
    }
    this.signedOut = false;
    this.feed?.stop();
    this.feed = new Feed({
      url: () => socketUrl(),
      onMessage: (message) => this.store.apply(message),
      onState: () => this.updateConnection(),
      onDrop: ({ opened }) => (opened ? true : this.stillAllowed()),
    }).start();
    return true;
  }

  /** After a failed connect: is it the token? (The API answers what a WebSocket cannot.) */
  async stillAllowed() {
    try {
      await gateway.list({ limit: '1' });
      return true;
    } catch (error) {
      return !(error instanceof AuthRequired);
    }
  }

  requireLogin() {
    if (this.signedOut) return;
    this.signedOut = true;
    this.feed?.stop();
    this.feed = null;
    this.store.clear(); // another user may sign in next: forget what this one saw
    this.positions.clear();
    this.show(new LoginView(this));
    this.setConnection('signedOut');
    this.showUser();
  }

  async signedIn() {
    this.signedOut = false;
    this.showUser();
    this.main.replaceChildren();
    if (await this.connect()) {
      announce('Signed in');
      this.route();
    }
  }

  showUser() {
    const user = session.get()?.user;
    const label = document.querySelector('[data-testid="current-user"]');
    const button = document.querySelector('[data-testid="sign-out"]');
    label.textContent = user ? user.email : '';
    label.hidden = !user || this.signedOut;
    button.hidden = !session.get() || this.signedOut;
  }

  route() {
    if (this.signedOut) return;
    const hash = location.hash.replace(/^#/, '') || '/';
    const match = hash.match(/^\/workflow\/([^/?#]+)$/);
    let view;
    let nav = 'list';
    if (match) {
      view = new WorkflowView(this, decodeURIComponent(match[1]));
      nav = null;
    } else if (hash === '/new') {
      view = new UploadView(this);
      nav = 'new';
    } else {
      view = new ListView(this);
    }
    for (const link of document.querySelectorAll('[data-nav]')) {
      if (link.dataset.nav === nav) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    this.show(view);
  }

  show(view) {
    this.view?.unmount?.();
    this.view = view;
    if (!view) return;
    this.main.replaceChildren(view.mount());
    const heading = this.main.querySelector('h1');
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
      document.title = `${heading.textContent} · Stox Gateway`;
    }
    this.updateConnection();
  }

  navigate(hash) {
    if (location.hash === hash) this.route();
    else location.hash = hash;
  }

  /** A fresh copy of one workflow from the API; one request at a time per workflow. */
  refresh(id) {
    if (this.refreshing.has(id)) return this.refreshing.get(id);
    const run = (async () => {
      for (let attempt = 0; attempt < 8; attempt += 1) {
        await new Promise((resolve) => setTimeout(resolve, attempt === 0 ? 50 : 250 * attempt));
        const workflow = await gateway.status(id);
        this.store.put(workflow);
        // Updates still waiting on a gap mean the copy was older than what the socket saw.
        if (!this.store.waiting(id)) return workflow;
      }
      return this.store.get(id);
    })();
    this.refreshing.set(id, run);
    run.catch(() => {}).finally(() => this.refreshing.delete(id));
    return run;
  }

  /** A socket for one workflow, resuming from the last seq it delivered. */
  workflowFeed(id, { onState, onGone }) {
    return new Feed({
      url: () => socketUrl({ workflow_id: id, since: this.positions.get(id) ?? 0 }),
      onMessage: (message) => {
        if (message.type === 'heartbeat') return;
        if (message.type !== 'snapshot' && message.workflow_id === id) {
          if (message.seq <= (this.positions.get(id) ?? 0)) return; // seen before the drop
          this.positions.set(id, message.seq);
        }
        this.store.apply(message, { timeline: true });
      },
      onState: (state) => {
        onState?.(state);
        this.updateConnection();
      },
      onDrop: async ({ opened }) => {
        if (opened) return true;
        try {
          await gateway.status(id);
          return true;
        } catch (error) {
          if (error.status === 404) onGone?.();
          return !(error instanceof AuthRequired) && error.status !== 404;
        }
      },
    });
  }

  updateConnection() {
    if (this.signedOut) return;
    const states = [this.feed?.state, this.view?.feed?.state].filter(Boolean);
    let state = 'stopped';
    if (states.includes('reconnecting')) state = 'reconnecting';
    else if (states.includes('connecting')) state = 'connecting';
    else if (states.length && states.every((s) => s === 'live')) state = 'live';
    this.setConnection(state);
  }

  setConnection(state) {
    const badge = document.querySelector('[data-testid="connection-status"]');
    if (badge.dataset.state === state) return;
    badge.dataset.state = state;
    badge.querySelector('.connection-text').textContent = CONNECTION_TEXT[state] ?? state;
  }
}

function errorPanel(error) {
  const panel = document.createElement('div');
  panel.className = 'notice notice-error';
  panel.setAttribute('role', 'alert');
  panel.textContent = `The gateway did not answer: ${error.message}. Reload the page to try again.`;
  return panel;
}

const app = new App();
window.stoxDashboard = app; // for the curious, and for tests
app.start();
