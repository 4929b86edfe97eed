/**
 * The block's init args (block.py's student_view → frag.initialize_js),
 * normalised: every value checked and defaulted, so the other modules never
 * see a missing or wrongly typed setting.
 */

// color_scheme is "<foreground>-<background>" (the original XBlock's names).
export const COLOR_SCHEMES = Object.freeze({
  'white-black': {
    foreground: '#ffffff', background: '#000000',
    cursor: '#ffffff', cursorAccent: '#000000', selectionBackground: 'rgba(255, 255, 255, 0.3)',
  },
  'black-white': {
    foreground: '#000000', background: '#ffffff',
    cursor: '#000000', cursorAccent: '#ffffff', selectionBackground: 'rgba(0, 0, 0, 0.25)',
  },
  'gray-black': {
    foreground: '#b0b0b0', background: '#000000',
    cursor: '#b0b0b0', cursorAccent: '#000000', selectionBackground: 'rgba(176, 176, 176, 0.3)',
  },
  'green-black': {
    foreground: '#00ff00', background: '#000000',
    cursor: '#00ff00', cursorAccent: '#000000', selectionBackground: 'rgba(0, 255, 0, 0.3)',
  },
});
const DEFAULT_SCHEME = 'white-black';

const GENERIC_FONTS = ['monospace', 'ui-monospace', 'serif', 'sans-serif', 'system-ui', 'cursive', 'fantasy'];
const PROTOCOLS = ['ssh', 'vnc', 'rdp'];
const RESIZE_METHODS = ['display-update', 'reconnect'];

/** `value` as a positive number, else `fallback`. */
export function positive(value, fallback) {
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/**
 * A CSS font-family list from the configured font name, with a monospace
 * fallback. Names that are not plain identifiers are quoted (and stripped of
 * quotes and backslashes, so a setting cannot break out of the value).
 */
export function fontFamily(name) {
  const families = String(name || '')
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      if (/^(["'])[^"'\\]*\1$/.test(part) || /^[A-Za-z][\w-]*$/.test(part)) {
        return part;
      }
      return '"' + part.replace(/["'\\]/g, '') + '"';
    });
  if (!families.some((f) => GENERIC_FONTS.includes(f.toLowerCase()))) {
    families.push('monospace');
  }
  return families.join(', ');
}

/** The configured font size is in points (the original's setting); xterm.js wants CSS pixels, 8 to 48. */
export function fontSizePx(points) {
  const pt = parseFloat(points);
  if (!Number.isFinite(pt) || pt <= 0) {
    return 13;
  }
  return Math.min(48, Math.max(8, Math.round(pt * 4 / 3)));
}

function urlOrNull(value) {
  return typeof value === 'string' && value ? value : null;
}

/** The normalised configuration from the raw init args. */
export function normalizeConfig(raw) {
  const c = raw && typeof raw === 'object' ? raw : {};
  const t = c.js_timeouts || {};
  const term = c.terminal || {};
  const desktop = c.desktop && typeof c.desktop === 'object' ? c.desktop : {};
  const scheme = Object.prototype.hasOwnProperty.call(COLOR_SCHEMES, term.color_scheme)
    ? term.color_scheme : DEFAULT_SCHEME;
  return {
    timeouts: {
      status: positive(t.status, 15000),
      keepalive: positive(t.keepalive, 30000),
      idle: positive(t.idle, 3600000),
      check: positive(t.check, 5000),
    },
    fontFamily: fontFamily(term.font_name || 'monospace'),
    fontSize: fontSizePx(term.font_size),
    // A custom scheme (the original's Guacamole format) arrives as a theme the server made: #rrggbb only.
    theme: term.theme && typeof term.theme === 'object'
      ? { ...COLOR_SCHEMES[DEFAULT_SCHEME], ...term.theme } : COLOR_SCHEMES[scheme],
    readOnly: !!c.read_only,
    hidden: !!c.hidden,
    fullscreen: !!c.enable_fullscreen,
    hasTests: !!c.has_tests,
    port: Number.isInteger(c.port) ? c.port : null,
    // The learner's last check is fetched (checks.load), never carried in the init args: its hints are their text.
    checkOnLoad: !!c.check_on_load,
    // The lab's protocol (stack_protocol): a terminal for ssh, a desktop for vnc and rdp.
    protocol: PROTOCOLS.includes(c.protocol) ? c.protocol : 'ssh',
    desktop: {
      resizeMethod: RESIZE_METHODS.includes(desktop.resize_method) ? desktop.resize_method : 'display-update',
      novncUrl: urlOrNull(desktop.novnc_url),
      guacamoleUrl: urlOrNull(desktop.guacamole_url),
    },
  };
}
