// Shown when the API answers 401: sign in (or create an account) and carry on.

import { gateway, session } from './api.js';
import { h } from './dom.js';

const PASSWORD_HINT = 'At least 8 characters, with both letters and digits.';

export class LoginView {
  constructor(app) {
    this.app = app;
    this.mode = 'login';
  }

  mount() {
    this.root = h('section', { class: 'view view-login' });
    this.render();
    return this.root;
  }

  render() {
    const registering = this.mode === 'register';
    const input = (id, label, attrs) => h('div', { class: 'field' },
      h('label', { for: id }, label),
      h('input', { id, name: id.replace('login-', ''), required: true, ...attrs }));
    this.error = h('div', {
      class: 'notice notice-error', role: 'alert', 'data-testid': 'login-error', hidden: true,
    });
    this.button = h('button', {
      type: 'submit', class: 'button button-primary',
      'data-testid': registering ? 'register-submit' : 'login-submit',
    }, registering ? 'Create account' : 'Sign in');
    const form = h('form', {
      class: 'card form form-narrow', 'data-testid': registering ? 'register-form' : 'login-form',
      'aria-labelledby': 'login-title', onsubmit: (event) => this.send(event),
    },
    registering ? h('div', { class: 'field-row' },
      input('login-first-name', 'First name', {
        autocomplete: 'given-name', 'data-testid': 'register-first-name', maxlength: '100',
      }),
      input('login-last-name', 'Last name', {
        autocomplete: 'family-name', 'data-testid': 'register-last-name', maxlength: '100',
      })) : null,
    input('login-email', 'Email', {
      type: 'email', autocomplete: 'username', 'data-testid': 'login-email',
      spellcheck: 'false',
    }),
    input('login-password', 'Password', {
      type: 'password', 'data-testid': 'login-password',
      autocomplete: registering ? 'new-password' : 'current-password',
    }),
    registering ? h('p', { class: 'hint' }, PASSWORD_HINT) : null,
    this.error,
    h('div', { class: 'form-actions' }, this.button));
    const toggle = h('button', {
      type: 'button', class: 'link', 'data-testid': registering ? 'login-link' : 'register-link',
      onclick: () => {
        this.mode = registering ? 'login' : 'register';
        this.render();
        this.root.querySelector('h1')?.focus();
      },
    }, registering ? 'Sign in instead' : 'Create an account');
    this.root.replaceChildren(
      h('h1', { id: 'login-title', tabindex: '-1' },
        registering ? 'Create an account' : 'Sign in'),
      h('p', { class: 'muted' }, registering
        ? 'Your account sees the workflows of the products you upload.'
        : 'This gateway needs an account to show its workflows.'),
      form,
      h('p', { class: 'form-switch' }, registering ? 'Have an account? ' : 'No account yet? ',
        toggle));
  }

  async send(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const value = (name) => form.querySelector(`#login-${name}`)?.value ?? '';
    const missing = [...form.querySelectorAll('input')].find((el) => !el.value.trim());
    this.error.hidden = true;
    if (missing) {
      this.fail(`Fill in ${form.querySelector(`label[for="${missing.id}"]`).textContent}.`);
      missing.focus();
      return;
    }
    this.button.disabled = true;
    try {
      const answer = this.mode === 'register'
        ? await gateway.register({
          email: value('email').trim(), password: value('password'),
          first_name: value('first-name'), last_name: value('last-name'),
        })
        : await gateway.login(value('email').trim(), value('password'));
      session.set(answer);
      await this.app.signedIn();
    } catch (error) {
      const details = (error.details ?? []).filter((d) => d.message).map((d) => {
        const message = String(d.message).replace(/^Value error, /, '');
        return d.field ? `${String(d.field).replaceAll('_', ' ')}: ${message}` : message;
      });
      if (error.status === 401) this.fail('The email or the password is not right.');
      else if (details.length) this.fail(details.join('\n'));
      else this.fail(error.message || 'That did not work; try again.');
    } finally {
      this.button.disabled = false;
    }
  }

  fail(message) {
    this.error.textContent = message;
    this.error.hidden = false;
  }
}
