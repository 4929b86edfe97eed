/**
 * Translations through the runtime's gettext.
 *
 * The block's own catalog (its i18n_js_namespace, window.HastexoXBlockI18N,
 * loaded before the bundle) wins; else the page's global gettext (the LMS's
 * djangojs catalog); else English. Looked up at call time, so a catalog that
 * loads after the bundle still counts.
 */

function catalog() {
  const g = typeof window === 'undefined' ? globalThis : window;
  return g.HastexoXBlockI18N || g;
}

/** The translation of `message`. */
export function gettext(message) {
  const c = catalog();
  return typeof c.gettext === 'function' ? c.gettext(message) : message;
}

/** The translation of `singular`/`plural` for `n`. */
export function ngettext(singular, plural, n) {
  const c = catalog();
  if (typeof c.ngettext === 'function') {
    return c.ngettext(singular, plural, n);
  }
  return n === 1 ? singular : plural;
}

/** `fmt` with every `%(name)s` replaced by `values.name` (unknown names stay as they are). */
export function interpolate(fmt, values) {
  return fmt.replace(/%\((\w+)\)s/g, (match, key) => (
    Object.prototype.hasOwnProperty.call(values, key) ? String(values[key]) : match
  ));
}
