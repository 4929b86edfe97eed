// The learner's last check on page load: fetched from check_status, never taken from the init args; shown as text.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { CheckPanel } from '../../hastexo_xblock/static/js/src/checks.js';
import { normalizeConfig } from '../../hastexo_xblock/static/js/src/config.js';

/** Just enough of an element for the panel: text, children, classes, attributes. */
function element() {
  return {
    textContent: '',
    hidden: true,
    disabled: false,
    children: [],
    attributes: {},
    classList: { names: new Set(), add(n) { this.names.add(n); }, remove(...n) { n.forEach((x) => this.names.delete(x)); } },
    setAttribute(name, value) { this.attributes[name] = value; },
    replaceChildren(...items) { this.children = items; },
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('the last check on page load', () => {
  it('comes from the check_on_load flag; a last_check in the init args is ignored', () => {
    const markup = { status: 'done', hints: ['</script><img src=x onerror=alert(1)>'] };
    assert.equal(normalizeConfig({ check_on_load: true, last_check: markup }).checkOnLoad, true);
    assert.equal(normalizeConfig({ last_check: markup }).checkOnLoad, false);
    assert.equal('lastCheck' in normalizeConfig({ last_check: markup }), false);
  });

  it('is fetched from check_status and its hints are inserted as text', async () => {
    globalThis.document = { createElement: () => element() };
    const hint = '</script><img src=x onerror="window.pwned=1">';
    const posts = [];
    const post = async (handler, body) => {
      posts.push([handler, body]);
      return { status: 'done', pass: 1, total: 2, message: 'You completed 1 of 2 tasks.', hints: [hint] };
    };
    const ui = { button: element(), status: element(), result: element(), message: element(), hints: element() };
    const panel = new CheckPanel(ui, post, { maxMs: 5000 });
    panel.load();
    await settle();
    assert.deepEqual(posts, [['check_status', {}]]);
    assert.equal(ui.result.hidden, false);
    assert.equal(ui.message.textContent, 'You completed 1 of 2 tasks.');
    assert.deepEqual(ui.hints.children.map((li) => li.textContent), [hint]);
    delete globalThis.document;
  });
});
