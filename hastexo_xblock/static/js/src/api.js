/**
 * The block's JSON handlers, called through the XBlock runtime's handler URLs.
 *
 * Every call is a POST with a JSON body, the page's CSRF token, and a
 * timeout; it resolves with the response's JSON object or rejects with a
 * HandlerError whose `status` is the HTTP status (0: the network failed or
 * the request timed out) and whose message is the server's `error` text, if
 * any (shown as text only).
 */
import { gettext as _ } from './i18n.js';

export const REQUEST_TIMEOUT_MS = 60000;

export class HandlerError extends Error {
  constructor(message, status) {
    super(message || _('The request failed.'));
    this.name = 'HandlerError';
    this.status = status || 0;
  }
}

/** The value of cookie `name` in `cookieString` (document.cookie), or null. */
export function getCookie(name, cookieString) {
  const prefix = name + '=';
  for (const raw of (cookieString || '').split(';')) {
    const part = raw.trim();
    if (part.startsWith(prefix)) {
      try {
        return decodeURIComponent(part.slice(prefix.length));
      } catch {
        return part.slice(prefix.length);
      }
    }
  }
  return null;
}

/**
 * A `post(handler, body)` function for one block: `runtime.handlerUrl(element, handler)`
 * gives the URL. `fetchImpl` and `cookies` are there for tests.
 */
export function makeApi(runtime, element, {
  fetchImpl = (...args) => fetch(...args),
  cookies = () => (typeof document === 'undefined' ? '' : document.cookie),
  timeoutMs = REQUEST_TIMEOUT_MS,
} = {}) {
  return async function post(handler, body) {
    const url = runtime.handlerUrl(element, handler);
    const headers = {
      'Content-Type': 'application/json',
      Accept: 'application/json',
      'X-Requested-With': 'XMLHttpRequest',
    };
    const csrf = getCookie('csrftoken', cookies());
    if (csrf) {
      headers['X-CSRFToken'] = csrf;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      let response;
      try {
        response = await fetchImpl(url, {
          method: 'POST',
          credentials: 'same-origin',
          headers,
          body: JSON.stringify(body || {}),
          signal: controller.signal,
        });
      } catch {
        throw new HandlerError(_('Could not reach the server.'), 0);
      }
      let data = null;
      try {
        data = await response.json();
      } catch {
        data = null;
      }
      if (!response.ok) {
        const message = data && typeof data.error === 'string' ? data.error : '';
        throw new HandlerError(message, response.status);
      }
      return data && typeof data === 'object' ? data : {};
    } finally {
      clearTimeout(timer);
    }
  };
}
