// The gateway's HTTP API, with the session (access + refresh token) kept in sessionStorage.
// A 401 refreshes the access token once; if that fails the page is told to ask for a login.

const SESSION_KEY = 'stox.session';

export class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error ?? {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code ?? 'http_error';
    this.details = Array.isArray(error.details) ? error.details : [];
  }
}

export class AuthRequired extends ApiError {
  constructor(body) {
    super(401, body ?? { error: { code: 'unauthorized', message: 'please sign in' } });
  }
}

export const events = new EventTarget();

export const session = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? 'null');
    } catch {
      return null;
    }
  },
  set(value) {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify({
      access_token: value.access_token,
      refresh_token: value.refresh_token,
      user: value.user ?? this.get()?.user ?? null,
    }));
    events.dispatchEvent(new Event('session'));
  },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
    events.dispatchEvent(new Event('session'));
  },
  token() {
    return this.get()?.access_token ?? null;
  },
};

let refreshing = null;

async function refreshSession() {
  const current = session.get();
  if (!current?.refresh_token) return false;
  refreshing ??= (async () => {
    try {
      const answer = await fetch('/api/v1/auth/refresh', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ refresh_token: current.refresh_token }),
      });
      if (!answer.ok) return false;
      session.set(await answer.json());
      return true;
    } catch {
      return false;
    } finally {
      setTimeout(() => { refreshing = null; }, 0);
    }
  })();
  return refreshing;
}

async function readBody(answer) {
  const text = await answer.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { error: { code: 'bad_response', message: text.slice(0, 200) } };
  }
}

/** fetch + JSON + the bearer token; throws ApiError (AuthRequired for a 401). */
export async function api(path, { method = 'GET', json, body, headers = {}, signal } = {}) {
  const send = () => {
    const sent = new Headers(headers);
    sent.set('Accept', 'application/json');
    let payload = body;
    if (json !== undefined) {
      sent.set('Content-Type', 'application/json');
      payload = JSON.stringify(json);
    }
    const token = session.token();
    if (token) sent.set('Authorization', `Bearer ${token}`);
    return fetch(path, { method, headers: sent, body: payload, signal });
  };
  let answer = await send();
  const isAuthCall = path.startsWith('/api/v1/auth/');
  if (answer.status === 401 && !isAuthCall && session.token()) {
    if (await refreshSession()) {
      answer = await send();
    } else {
      // The token is spent. Without it the call may still pass (a gateway without auth).
      session.clear();
      answer = await send();
    }
  }
  const data = await readBody(answer);
  if (answer.status === 401 && !isAuthCall) {
    session.clear();
    events.dispatchEvent(new Event('auth-required'));
    throw new AuthRequired(data);
  }
  if (!answer.ok) throw new ApiError(answer.status, data);
  return data;
}

export const gateway = {
  list: (params = {}) => {
    const query = new URLSearchParams({ limit: '100', ...params });
    return api(`/api/v1/workflow/list?${query}`);
  },
  find: (params = {}) => api(`/api/v1/workflows?${new URLSearchParams(params)}`),
  bulk: (action, body) => api(`/api/v1/workflow/bulk/${action}`, { method: 'POST', json: body }),
  status: (id) => api(`/api/v1/workflow/status?workflow_id=${encodeURIComponent(id)}`),
  pipelines: () => api('/api/v1/pipelines'),
  upload: (product, idempotencyKey) => api('/api/v1/workflow/upload', {
    method: 'POST', json: product, headers: { 'Idempotency-Key': idempotencyKey },
  }),
  cancel: (id) => api(`/api/v1/workflow/${encodeURIComponent(id)}/cancel`, { method: 'POST' }),
  retry: (id) => api(`/api/v1/workflow/${encodeURIComponent(id)}/retry`, { method: 'POST' }),
  uploadImage: (file) => {
    const form = new FormData();
    form.append('file', file, file.name);
    return api('/api/v1/media', { method: 'POST', body: form });
  },
  login: (email, password) => api('/api/v1/auth/login', {
    method: 'POST', json: { email, password },
  }),
  register: (fields) => api('/api/v1/auth/register', { method: 'POST', json: fields }),
};

/** The WebSocket URL of /ws with these query parameters and the access token. */
export function socketUrl(params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) query.set(key, String(value));
  }
  const token = session.token();
  if (token) query.set('token', token);
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const text = query.toString();
  return `${scheme}://${location.host}/ws${text ? `?${text}` : ''}`;
}
