/**
 * Entry point of the bundle (static/js/hastexo.js): the XBlock runtime calls
 * window.HastexoXBlock(runtime, element, config), the function name that
 * block.py's student_view passes to frag.initialize_js. One controller per
 * block element; rendering the block again replaces the old one.
 *
 * Requires (loaded before the bundle): vendor/xterm/xterm.js
 * (window.Terminal) and vendor/xterm/addon-fit.js (window.FitAddon.FitAddon).
 * noVNC and guacamole-common-js are imported on demand, for desktop labs only.
 */
import { HastexoLab } from './lab.js';

const instances = new WeakMap();

function HastexoXBlock(runtime, element, config) {
  const el = element && element.jquery ? element[0] : element;
  if (!el) {
    return;
  }
  const previous = instances.get(el);
  if (previous) {
    previous.destroy();
  }
  const lab = new HastexoLab(runtime, el, config);
  instances.set(el, lab);
  lab.start();
}

window.HastexoXBlock = HastexoXBlock;
