// Labels and numbers as people read them.

const STEP_LABELS = {
  image_processing: 'Image processing',
  ai_enhancement: 'AI enhancement',
  seo_generation: 'SEO generation',
};

export const STATUSES = ['pending', 'processing', 'completed', 'failed', 'cancelled'];

export function stepLabel(type) {
  if (!type) return '—';
  return STEP_LABELS[type] ?? type.replaceAll('_', ' ').replace(/^./, (c) => c.toUpperCase());
}

export function statusLabel(status) {
  return status ? status[0].toUpperCase() + status.slice(1) : '—';
}

export function parseTime(value) {
  if (!value) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

export function ago(value, now = Date.now()) {
  const at = parseTime(value);
  if (at === null) return '—';
  const seconds = Math.max(0, Math.round((now - at) / 1000));
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${seconds}s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ${minutes % 60}m ago`;
  return `${Math.floor(hours / 24)}d ago`;
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  const value = Math.max(0, ms);
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(value < 10_000 ? 2 : 1)} s`;
  const minutes = Math.floor(value / 60_000);
  return `${minutes}m ${Math.round((value % 60_000) / 1000)}s`;
}

export function clock(value) {
  const at = parseTime(value);
  if (at === null) return '—';
  return new Date(at).toLocaleTimeString(undefined, {
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

export function dateTime(value) {
  const at = parseTime(value);
  return at === null ? '—' : new Date(at).toLocaleString();
}

export function price(value) {
  if (value === null || value === undefined || value === '') return '—';
  const number = Number(value);
  if (!Number.isFinite(number)) return String(value);
  return number.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

export function mediaUrl(path) {
  // "thumbnails/x.jpg" → "/media/thumbnails/x.jpg", each segment encoded.
  return '/media/' + String(path).split('/').map(encodeURIComponent).join('/');
}

export function newId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
