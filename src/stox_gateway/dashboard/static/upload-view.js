// #/new — upload a product: files go to POST /api/v1/media first (each answers a name in the
// media folder), then the product starts a workflow and its page opens.

import { ApiError, AuthRequired, gateway } from './api.js';
import { announce, h } from './dom.js';
import { newId, parseDecimal, price, separators } from './format.js';
import { PipelinePicker } from './pipeline-picker.js';

const MAX_IMAGE_BYTES = 10 * 1024 * 1024;
const MAX_IMAGES = 20;
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._ -]{0,254}$/;
const ACCEPT = 'image/jpeg,image/png,image/gif,image/webp,image/bmp';
const CODE = /^[A-Z]{3}$/;

/** "12.50" or "12,50", as this browser writes a price. */
function examplePrice() {
  return `12${separators(navigator.language).decimal}50`;
}

export class UploadView {
  constructor(app) {
    this.app = app;
    this.uploaded = new WeakMap(); // File → its name in the media folder (no second upload)
    this.previews = [];
    this.picker = new PipelinePicker();
  }

  mount() {
    const field = (id, label, control, hint) => h('div', { class: 'field' },
      h('label', { for: id }, label),
      control,
      hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null,
      h('p', { class: 'field-error', id: `${id}-error`, 'data-testid': `${id}-error`,
        hidden: true }));
    this.name = h('input', {
      id: 'upload-name', name: 'name', 'data-testid': 'upload-name', required: true,
      maxlength: '200', autocomplete: 'off', 'aria-describedby': 'upload-name-error',
    });
    this.description = h('textarea', {
      id: 'upload-description', name: 'description', 'data-testid': 'upload-description',
      rows: '4', maxlength: '10000', 'aria-describedby': 'upload-description-error',
    });
    this.category = h('input', {
      id: 'upload-category', name: 'category', 'data-testid': 'upload-category',
      maxlength: '200', autocomplete: 'off', 'aria-describedby': 'upload-category-error',
    });
    // Text, not type=number: the browser's number field reads "12,50" by rules of its own
    // (or not at all); here it is read by the page's locale and shown before it is sent.
    this.price = h('input', {
      id: 'upload-price', name: 'price', type: 'text', inputmode: 'decimal', autocomplete: 'off',
      'data-testid': 'upload-price', placeholder: examplePrice(),
      'aria-describedby': 'upload-price-hint upload-price-error',
      oninput: () => this.showPrice(),
    });
    this.currency = h('input', {
      id: 'upload-currency', name: 'currency', maxlength: '3', autocomplete: 'off',
      'data-testid': 'upload-currency', placeholder: 'EUR', spellcheck: 'false',
      'aria-describedby': 'upload-currency-hint upload-currency-error',
      oninput: () => this.showPrice(),
    });
    this.files = h('input', {
      id: 'upload-files', name: 'files', type: 'file', multiple: true, accept: ACCEPT,
      'data-testid': 'upload-files', 'aria-describedby': 'upload-files-hint upload-files-error',
      onchange: () => this.showFiles(),
    });
    this.fileList = h('ul', { class: 'file-list', 'data-testid': 'upload-file-list' });
    this.refs = h('textarea', {
      id: 'upload-images', name: 'images', rows: '3', 'data-testid': 'upload-image-refs',
      spellcheck: 'false', placeholder: 'image1.jpg\nhttps://example.com/photo.png',
      'aria-describedby': 'upload-images-hint upload-images-error',
    });
    this.status = h('p', { class: 'form-status', role: 'status', 'data-testid': 'upload-status' });
    this.error = h('div', {
      class: 'notice notice-error', role: 'alert', 'data-testid': 'upload-error', hidden: true,
    });
    this.submit = h('button', {
      type: 'submit', class: 'button button-primary', 'data-testid': 'upload-submit',
    }, 'Start workflow');
    this.form = h('form', {
      class: 'card form', 'data-testid': 'upload-form', novalidate: true,
      'aria-labelledby': 'upload-title', onsubmit: (event) => this.send(event),
    },
    h('fieldset', {},
      h('legend', {}, 'Product'),
      field('upload-name', 'Name (required)', this.name),
      field('upload-description', 'Description', this.description),
      h('div', { class: 'field-row' },
        field('upload-category', 'Category', this.category),
        field('upload-price', 'Price', this.price, ' '),
        field('upload-currency', 'Currency', this.currency,
          'ISO 4217 code; empty: the shop\'s currency'))),
    this.picker.element,
    h('fieldset', {},
      h('legend', {}, 'Images'),
      field('upload-files', 'Upload image files', this.files,
        'JPEG, PNG, GIF, WebP or BMP, up to 10 MB each.'),
      this.fileList,
      field('upload-images', 'Or name images already in the media folder, or URLs',
        this.refs, 'One per line: a file name such as image1.jpg, or an http(s) URL.')),
    this.error,
    h('div', { class: 'form-actions' }, this.submit, this.status));
    const preview = this.form.querySelector('#upload-price-hint');
    Object.assign(preview.dataset, { testid: 'upload-price-preview' });
    preview.setAttribute('aria-live', 'polite');
    const view = h('section', { class: 'view view-upload' },
      h('div', { class: 'view-head' },
        h('h1', { id: 'upload-title' }, 'New product'),
        h('a', { href: '#/', class: 'button button-quiet' }, 'Back to workflows')),
      h('p', { class: 'muted lead' },
        'The product runs through the steps of the workflow type below; ',
        'its page shows every step as it happens.'),
      this.form);
    this.picker.load();
    return view;
  }

  showFiles() {
    for (const url of this.previews) URL.revokeObjectURL(url);
    this.previews = [];
    const files = [...this.files.files];
    this.fileList.replaceChildren(...files.map((file) => {
      const tooBig = file.size > MAX_IMAGE_BYTES;
      const url = URL.createObjectURL(file);
      this.previews.push(url);
      return h('li', { class: tooBig ? 'file file-bad' : 'file' },
        h('img', { src: url, alt: '', width: '40', height: '40' }),
        h('span', {}, file.name),
        h('span', { class: 'muted small' },
          tooBig ? 'larger than 10 MB' : `${Math.max(1, Math.round(file.size / 1024))} KB`));
    }));
  }

  /** What the price field will send, under it: the number as read, or why it cannot be. */
  showPrice() {
    const hint = this.form?.querySelector('#upload-price-hint');
    if (!hint) return;
    const text = this.price.value.trim();
    if (!text) {
      hint.textContent = ' ';
      return;
    }
    const value = parseDecimal(text, navigator.language);
    const code = this.currency.value.trim().toUpperCase();
    hint.textContent = value === null
      ? 'Not a price this page can read.'
      : `Will send ${value}${code ? ` ${code}` : ''} (${price(value, CODE.test(code) ? code : null)})`;
  }

  fieldError(id, message) {
    const slot = this.form.querySelector(`#${id}-error`);
    const control = this.form.querySelector(`#${id}`);
    if (!slot) return false;
    slot.textContent = message ?? '';
    slot.hidden = !message;
    if (message) control?.setAttribute('aria-invalid', 'true');
    else control?.removeAttribute('aria-invalid');
    return true;
  }

  clearErrors() {
    for (const id of ['upload-name', 'upload-description', 'upload-category', 'upload-price',
      'upload-currency', 'upload-files', 'upload-images', 'upload-type']) this.fieldError(id, null);
    this.error.hidden = true;
    this.error.textContent = '';
  }

  /** The product from the form, or null after marking what is wrong. */
  read() {
    let ok = true;
    const name = this.name.value.trim();
    if (!name) ok = !this.fieldError('upload-name', 'Give the product a name.');
    let amount = null;
    if (this.price.value.trim() !== '') {
      amount = parseDecimal(this.price.value, navigator.language);
      if (amount === null || !Number.isFinite(amount) || amount < 0) {
        const { decimal } = separators(navigator.language);
        ok = !this.fieldError('upload-price',
          `The price is a number of 0 or more, such as 12${decimal}50.`);
      }
    }
    const currency = this.currency.value.trim().toUpperCase();
    if (currency && !CODE.test(currency)) {
      ok = !this.fieldError('upload-currency', 'A currency is a three-letter code, such as EUR.');
    }
    const refs = this.refs.value.split('\n').map((line) => line.trim()).filter(Boolean);
    const badRef = refs.find((ref) => !(/^https?:\/\/\S+$/i.test(ref)
      || (FILE_NAME.test(ref) && !ref.includes('..'))));
    if (badRef) {
      ok = !this.fieldError('upload-images',
        `"${badRef}" is neither a file name in the media folder nor an http(s) URL.`);
    }
    const files = [...this.files.files];
    const big = files.find((file) => file.size > MAX_IMAGE_BYTES);
    if (big) ok = !this.fieldError('upload-files', `${big.name} is larger than 10 MB.`);
    if (files.length + refs.length > MAX_IMAGES) {
      ok = !this.fieldError('upload-images', `At most ${MAX_IMAGES} images per product.`);
    }
    if (!ok) return null;
    return {
      product: {
        name,
        description: this.description.value,
        category: this.category.value.trim(),
        price: amount,
        ...(currency && amount !== null ? { currency } : {}),
      },
      files,
      refs,
    };
  }

  async send(event) {
    event.preventDefault();
    if (this.busy) return;
    this.clearErrors();
    const input = this.read();
    if (!input) {
      this.form.querySelector('[aria-invalid="true"]')?.focus();
      return;
    }
    this.busy = true;
    this.submit.disabled = true;
    try {
      const names = [];
      for (const [index, file] of input.files.entries()) {
        if (!this.uploaded.has(file)) {
          this.status.textContent = `Uploading image ${index + 1} of ${input.files.length}…`;
          try {
            this.uploaded.set(file, (await gateway.uploadImage(file)).name);
          } catch (error) {
            if (error instanceof ApiError && !(error instanceof AuthRequired)) {
              error.message = `${file.name}: ${error.message}`;
              error.field = 'upload-files';
            }
            throw error;
          }
        }
        names.push(this.uploaded.get(file));
      }
      this.status.textContent = 'Starting the workflow…';
      const type = this.picker.value;
      const answer = await gateway.upload({
        ...input.product, images: [...names, ...input.refs], ...(type ? { workflow_type: type } : {}),
      }, newId());
      announce('Workflow started');
      this.app.navigate(`#/workflow/${encodeURIComponent(answer.workflow_id)}`);
    } catch (error) {
      if (error instanceof AuthRequired) return;
      this.status.textContent = '';
      this.showError(error);
    } finally {
      this.busy = false;
      this.submit.disabled = false;
    }
  }

  showError(error) {
    if (error.field) {
      this.fieldError(error.field, error.message);
      this.form.querySelector(`#${error.field}`)?.focus();
      return;
    }
    const unplaced = [];
    for (const detail of error.details ?? []) {
      const [field, index] = String(detail.field ?? '').split('.');
      const id = { name: 'upload-name', description: 'upload-description',
        category: 'upload-category', price: 'upload-price', currency: 'upload-currency',
        images: 'upload-images',
        workflow_type: 'upload-type' }[field];
      const where = index !== undefined ? ` (image ${Number(index) + 1})` : '';
      if (!id || !this.fieldError(id, `${detail.message}${where}`)) unplaced.push(detail.message);
    }
    this.error.replaceChildren(
      h('p', {}, error.message || 'The upload failed.'),
      unplaced.length ? h('ul', {}, unplaced.map((m) => h('li', {}, m))) : null);
    this.error.hidden = false;
  }

  unmount() {
    for (const url of this.previews) URL.revokeObjectURL(url);
    this.picker.destroy();
  }
}
