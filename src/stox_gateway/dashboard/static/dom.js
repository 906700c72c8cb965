// A tiny DOM builder: h('p', {class: 'x'}, 'text', child). Text is always set as text, never as
// HTML, so product names and service results cannot inject markup.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key in el && typeof value !== 'string' && key !== 'list') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

// Replace `el`'s content only when `signature` changed since the last call: keeps images,
// focus and scroll where they are when a re-render would draw the same thing.
export function renderIfChanged(el, signature, render) {
  if (el.__signature === signature) return false;
  el.__signature = signature;
  el.replaceChildren(...[render()].flat(Infinity).filter(Boolean));
  return true;
}

export function announce(message) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.textContent = '';
  // A fresh text node after a tick makes screen readers announce a repeated message too.
  setTimeout(() => { region.textContent = message; }, 30);
}
