// A WebSocket that stays open: it reconnects by itself with exponential backoff (and jitter),
// notices a silent connection by the gateway's heartbeats, and asks `url()` for the address
// on every attempt, so a reconnect carries the newest token and `since`.

const CLOSE_TOO_SLOW = 1013;
const DENIED = new Set([4400, 4401, 4403, 4404]); // the gateway's "HTTP status + 4000" codes

export class Feed {
  /**
   * @param {object} options
   * @param {() => string} options.url the address for the next attempt
   * @param {(message: object) => void} options.onMessage every parsed message
   * @param {(state: string) => void} [options.onState] connecting | live | reconnecting | stopped
   * @param {(info: {code: number, opened: boolean}) => Promise<boolean>|boolean} [options.onDrop]
   *   asked after a close: answer false to stop (e.g. the API says 401 or 404)
   */
  constructor({ url, onMessage, onState = () => {}, onDrop = () => true, silenceMs = 75_000 }) {
    Object.assign(this, { url, onMessage, onState, onDrop, silenceMs });
    this.socket = null;
    this.failures = 0;
    this.stopped = true;
    this.timer = null;
    this.watchdog = null;
    this.state = 'stopped';
    this.connections = 0;
    this.wake = () => {
      if (!this.stopped && this.timer !== null) this.#retryNow();
    };
  }

  start() {
    if (!this.stopped) return this;
    this.stopped = false;
    window.addEventListener('online', this.wake);
    this.#connect();
    return this;
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.wake);
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    this.timer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, 'done');
    this.#setState('stopped');
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.onState(state);
  }

  #connect() {
    this.timer = null;
    if (this.stopped) return;
    this.#setState(this.connections === 0 ? 'connecting' : 'reconnecting');
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.#schedule(1006);
      return;
    }
    this.socket = socket;
    let opened = false;
    socket.addEventListener('open', () => {
      if (this.socket !== socket) return;
      opened = true;
      this.connections += 1;
      this.failures = 0;
      this.#setState('live');
      this.#armWatchdog();
    });
    socket.addEventListener('message', (event) => {
      if (this.socket !== socket) return;
      this.#armWatchdog();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onMessage(message);
    });
    socket.addEventListener('close', async (event) => {
      if (this.socket !== socket) return; // replaced or stopped on purpose
      this.socket = null;
      clearTimeout(this.watchdog);
      if (this.stopped) return;
      this.#setState('reconnecting');
      let keepGoing = !DENIED.has(event.code);
      try {
        keepGoing = (await this.onDrop({ code: event.code, opened })) && keepGoing;
      } catch {
        // the check itself failed (network down): keep trying
      }
      if (!keepGoing) {
        this.stop();
        return;
      }
      if (!opened) this.failures += 1;
      this.#schedule(event.code);
    });
  }

  #schedule(code) {
    if (this.stopped) return;
    clearTimeout(this.timer);
    // 0.5 s, 1 s, 2 s … up to 15 s, each ±50 %; a client dropped for reading too slowly
    // comes back at once (it resumes from `since`, so it misses nothing).
    const base = code === CLOSE_TOO_SLOW ? 100 : Math.min(15_000, 500 * 2 ** this.failures);
    const delay = base / 2 + Math.random() * base;
    this.timer = setTimeout(() => this.#connect(), delay);
  }

  #retryNow() {
    clearTimeout(this.timer);
    this.#connect();
  }

  #armWatchdog() {
    clearTimeout(this.watchdog);
    // The gateway sends a heartbeat every 30 s: silence far beyond that means a dead link.
    this.watchdog = setTimeout(() => this.socket?.close(4000, 'silent'), this.silenceMs);
  }
}
