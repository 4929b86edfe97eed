/**
 * The gateway's websocket protocol, from its one definition
 * (static/js/gateway-protocol.json, which hastexo_xblock/gateway/protocol.py
 * loads too): close codes, what the browser does after each, and limits.
 */
import definition from '../gateway-protocol.json' with { type: 'json' };

/** Close codes by name, e.g. CLOSE.NORMAL === 1000. */
export const CLOSE = Object.freeze(Object.fromEntries(
  Object.entries(definition.close_codes).map(([name, entry]) => [name, entry.code]),
));

const ACTIONS = new Map(Object.values(definition.close_codes).map((entry) => [entry.code, entry.action]));

/** Every action the definition may name. */
export const KNOWN_ACTIONS = Object.freeze(['ended', 'reconnect', 'new_ticket', 'check_status', 'give_up']);

/**
 * What to do after a close with `code`: one of KNOWN_ACTIONS. A code the
 * definition does not name (1006 when the handshake or the network failed,
 * 1001, 1005) is a lost connection: 'reconnect'.
 */
export function closeAction(code) {
  const action = ACTIONS.get(code);
  return KNOWN_ACTIONS.includes(action) ? action : 'reconnect';
}

/** The definition's limits (max_control_bytes, max_input_bytes, terminal sizes). */
export const LIMITS = Object.freeze({ ...definition.limits });
