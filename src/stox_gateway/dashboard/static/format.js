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

export function price(value, currency) {
  if (value === null || value === undefined || value === '') return '—';
  const number = Number(value);
  if (!Number.isFinite(number)) return String(value);
  if (currency) {
    try {
      return number.toLocaleString(undefined, { style: 'currency', currency });
    } catch { /* a code this browser does not know: the number, then the code */ }
  }
  const text = number.toLocaleString(undefined,
    { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return currency ? `${text} ${currency}` : text;
}

/** The browser's decimal and group separators, from Intl.NumberFormat's parts. */
export function separators(locale) {
  const parts = new Intl.NumberFormat(locale).formatToParts(12345.6);
  return {
    decimal: parts.find((p) => p.type === 'decimal')?.value ?? '.',
    group: parts.find((p) => p.type === 'group')?.value ?? ',',
  };
}

/**
 * A decimal as people type it in `locale` ("12,50" in German, "12.50" in English, "1.234,5"),
 * or null when it cannot be read for sure. A lone "," or "." is the decimal separator unless
 * the locale groups with it and exactly three digits follow ("1,250" in English is 1250); a
 * separator that is neither a decimal nor a valid grouping is refused, never dropped.
 */
export function parseDecimal(text, locale) {
  const { decimal, group } = separators(locale);
  // Spaces, no-break spaces and apostrophes can only group digits ("1 234", "1’234"): "_".
  const s = String(text).trim().replace(/[\s\u00a0\u202f'’]+/g, '_');
  if (!/^\d[\d.,_]*$/.test(s) || !/\d$/.test(s)) return null;
  const points = [...s.matchAll(/[.,]/g)].map((m) => m[0]);
  let point = null; // the decimal separator in `s`, if any
  if (new Set(points).size === 2) {
    point = points[points.length - 1];
  } else if (points.length === 1) {
    const after = s.slice(s.indexOf(points[0]) + 1);
    const grouping = points[0] === group && points[0] !== decimal && /^\d{3}$/.test(after)
      && !s.includes('_');
    point = grouping ? null : points[0];
  } else if (points.length > 1 && points[0] === decimal) {
    return null; // "1.2.3" in English: two decimal points
  }
  const cut = point ? s.lastIndexOf(point) : s.length;
  const whole = s.slice(0, cut);
  const fraction = s.slice(cut + 1);
  if (!/^\d*$/.test(fraction)) return null;
  const marks = new Set(whole.match(/[.,_]/g) ?? []);
  if (marks.size > 1) return null;
  const [sep] = marks;
  if (sep !== undefined && !new RegExp(`^\\d{1,3}(\\${sep}\\d{3})+$`).test(whole)) return null;
  const digits = sep === undefined ? whole : whole.replaceAll(sep, '');
  return Number(fraction ? `${digits}.${fraction}` : digits);
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
