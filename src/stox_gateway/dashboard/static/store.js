// Every workflow the page knows, kept current by WebSocket updates.
//
// Each workflow carries `seq`, the seq of the last update folded into it. An update with a
// seq at or below it is a repeat (another socket, a replay after a reconnect) and is dropped;
// the next one (seq + 1) is applied; one further ahead waits in `pending` until the ones
// before it arrive or a fresh copy from the API covers them. So nothing is applied twice and
// nothing is skipped, whatever order the sockets and HTTP answers come in.

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

export function isEnded(workflow) {
  return TERMINAL.has(workflow?.status);
}

export class Store extends EventTarget {
  constructor() {
    super();
    this.workflows = new Map();
    this.pending = new Map(); // workflow id → Map(seq → update)
    this.timelines = new Map(); // workflow id → Map(seq → update), for the workflow page
  }

  clear() {
    this.workflows.clear();
    this.pending.clear();
    this.timelines.clear();
  }

  get(id) {
    return this.workflows.get(id);
  }

  all() {
    return [...this.workflows.values()];
  }

  /** A whole workflow (snapshot, API answer): taken when at least as new as ours. */
  put(workflow) {
    if (!workflow?.id) return;
    const known = this.workflows.get(workflow.id);
    if (known && (workflow.seq ?? 0) < (known.seq ?? 0)) return;
    this.workflows.set(workflow.id, structuredClone(workflow));
    this.#drain(workflow.id);
    this.#changed(workflow.id);
  }

  /** One WebSocket message, from any socket. */
  apply(message, { timeline = false } = {}) {
    if (!message || message.type === 'heartbeat') return;
    if (message.type === 'snapshot') {
      if (message.workflow_id) this.put(message.data);
      else for (const workflow of message.data?.workflows ?? []) this.put(workflow);
      return;
    }
    const id = message.workflow_id;
    if (!id || typeof message.seq !== 'number') return;
    const recorded = timeline && this.#record(message);
    const known = this.workflows.get(id);
    if (!known) {
      if (message.type === 'workflow_started' && message.seq === 1) {
        this.workflows.set(id, reduce(undefined, message));
        this.#drain(id);
        this.#changed(id);
      } else {
        this.#wait(message);
      }
      return;
    }
    if (message.seq <= known.seq) {
      // Already folded in (an API answer was ahead of the socket): only the history grew.
      if (recorded) this.#changed(id);
      return;
    }
    if (message.seq > known.seq + 1) {
      this.#wait(message);
      return;
    }
    this.workflows.set(id, reduce(known, message));
    this.#drain(id);
    this.#changed(id, message);
  }

  timeline(id) {
    return [...(this.timelines.get(id)?.values() ?? [])].sort((a, b) => a.seq - b.seq);
  }

  /** Updates that wait for the ones before them (a gap), by workflow. */
  waiting(id) {
    return this.pending.get(id)?.size ?? 0;
  }

  #record(message) {
    let log = this.timelines.get(message.workflow_id);
    if (!log) this.timelines.set(message.workflow_id, (log = new Map()));
    if (log.has(message.seq)) return false;
    log.set(message.seq, {
      seq: message.seq, type: message.type, timestamp: message.timestamp, data: message.data,
    });
    return true;
  }

  #wait(message) {
    let queue = this.pending.get(message.workflow_id);
    if (!queue) this.pending.set(message.workflow_id, (queue = new Map()));
    queue.set(message.seq, message);
    // Ask for a fresh copy: it covers the gap (the app fetches the workflow's status).
    this.dispatchEvent(new CustomEvent('gap', { detail: { id: message.workflow_id } }));
  }

  #drain(id) {
    const queue = this.pending.get(id);
    if (!queue) return;
    let workflow = this.workflows.get(id);
    for (const seq of [...queue.keys()]) if (seq <= workflow.seq) queue.delete(seq);
    while (queue.has(workflow.seq + 1)) {
      const next = queue.get(workflow.seq + 1);
      queue.delete(next.seq);
      workflow = reduce(workflow, next);
    }
    this.workflows.set(id, workflow);
    if (!queue.size) this.pending.delete(id);
  }

  #changed(id, message = null) {
    this.dispatchEvent(new CustomEvent('change', { detail: { id, message } }));
  }
}

function blankStep(step) {
  return {
    id: step.step_id, type: step.step_type, status: 'pending', attempts: 0, max_attempts: null,
    ...(Array.isArray(step.after) ? { after: step.after } : {}), started_at: null, completed_at: null, deadline_at: null, result: null, error: null,
    progress: null,
  };
}

/** Fold one update into a workflow: the gateway's state machine, as the browser sees it. */
export function reduce(previous, message) {
  const { type, data = {}, timestamp: at, seq } = message;
  const wf = previous
    ? structuredClone(previous)
    : {
      id: message.workflow_id, type: data.workflow_type ?? 'product_upload', status: 'pending',
      product: data.product ?? {}, current_step: null, steps: [], created_at: at,
      updated_at: at, completed_at: null, error: null, correlation_id: null, seq: 0,
    };
  const step = wf.steps.find((s) => s.id === data.step_id)
    ?? wf.steps.find((s) => s.type === data.step_type && data.step_type);
  switch (type) {
    case 'workflow_started':
      wf.status = 'processing';
      if (data.product) wf.product = data.product;
      if (Array.isArray(data.steps) && !wf.steps.length) wf.steps = data.steps.map(blankStep);
      break;
    case 'step_started':
      if (step) {
        Object.assign(step, {
          status: 'running', attempts: data.attempt ?? step.attempts + 1, started_at: at,
          completed_at: null, error: null, progress: null,
        });
      }
      wf.status = 'processing';
      wf.current_step = data.step_type ?? step?.type ?? wf.current_step;
      break;
    case 'step_retrying':
      if (step) {
        const startsAt = new Date(Date.parse(at) + (data.retry_in_seconds ?? 0) * 1000);
        Object.assign(step, {
          status: 'running', attempts: data.attempt ?? step.attempts + 1,
          max_attempts: data.max_attempts ?? step.max_attempts, error: data.error ?? null,
          error_message: data.error_message ?? null, error_detail: data.error_detail ?? null,
          started_at: startsAt.toISOString(), completed_at: null, progress: null,
        });
      }
      wf.status = 'processing';
      wf.completed_at = null;
      wf.error = null;
      wf.current_step = data.step_type ?? step?.type ?? wf.current_step;
      break;
    case 'step_completed':
      if (step) {
        Object.assign(step, {
          status: 'completed', completed_at: at, result: data.result ?? {}, error: null,
          attempts: data.attempt ?? step.attempts, deadline_at: null, progress: null,
        });
      }
      break;
    case 'step_progress':
      // A running attempt's latest report; one from an attempt since replaced is ignored.
      if (step && step.status === 'running' && (data.attempt ?? step.attempts) === step.attempts) {
        step.progress = { ...data, seq, timestamp: at };
      }
      break;
    case 'workflow_completed':
      wf.status = 'completed';
      wf.completed_at = at;
      wf.current_step = null;
      break;
    case 'workflow_failed':
      if (step) {
        Object.assign(step, {
          status: 'failed', completed_at: at, deadline_at: null,
          // "image_processing failed after 1 attempt(s): <the step's own error>"
          error: String(data.error ?? '').replace(/^\S+ failed after \d+ attempt\(s\): /, ''),
          error_message: data.error_message ?? null, error_detail: data.error_detail ?? null,
        });
      }
      wf.status = 'failed';
      wf.error = data.error ?? 'failed';
      wf.error_message = data.error_message ?? null;
      wf.error_detail = data.error_detail ?? null;
      wf.completed_at = at;
      wf.current_step = null;
      break;
    case 'workflow_cancelled': {
      // Parallel branches: every step still running stops.
      for (const running of wf.steps.filter((s) => s.status === 'running')) {
        Object.assign(running, {
          status: 'failed', completed_at: at, deadline_at: null, error: 'cancelled',
        });
      }
      wf.status = 'cancelled';
      wf.error = 'cancelled by request';
      wf.completed_at = at;
      wf.current_step = null;
      break;
    }
    default:
      break; // an update type this page does not know yet: keep the seq, change nothing
  }
  // Parallel branches: the first running step in definition order, as the gateway answers it.
  if (wf.status === 'processing') {
    wf.current_step = wf.steps.find((s) => s.status === 'running')?.type ?? wf.current_step;
  }
  wf.seq = seq;
  wf.updated_at = at;
  return wf;
}
