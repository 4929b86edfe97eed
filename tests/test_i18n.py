"""Translations: catalogs complete and compiled, messages stored as codes and shown in the learner's language."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from django.utils import translation

from hastexo_xblock import checks, labs, lifecycle, messages, states
from hastexo_xblock.models import Check, Stack

from .test_block import make_block

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import translations  # noqa: E402


def test_german_is_complete_and_compiled():
    assert translations.check() == []


def test_every_catalog_message_has_a_german_translation():
    with translation.override("de"):
        for code, template in messages.CATALOG.items():
            if template != "%(detail)s":
                assert translation.gettext(template) != template, code


def test_a_message_is_stored_as_code_and_parameters_and_rendered_per_language():
    stored = messages.stored("launch.create_failed", detail="quota exceeded")
    data = json.loads(stored)
    assert data["code"] == "launch.create_failed" and data["params"] == {"detail": "quota exceeded"}
    assert data["text"] == "Your lab could not be created: quota exceeded"  # for readers without the catalog
    with translation.override("de"):
        assert messages.render(stored) == "Ihr Lab konnte nicht erstellt werden: quota exceeded"
    with translation.override("en"):
        assert messages.render(stored) == "Your lab could not be created: quota exceeded"
    assert messages.render("an old plain message") == "an old plain message"
    assert messages.render('{"code": "from.a.newer.worker", "text": "Newer text"}') == "Newer text"
    with pytest.raises(KeyError):
        messages.Message("no.such.code")


@pytest.mark.django_db(transaction=True)
def test_a_worker_failure_is_shown_in_the_learners_language(fake_providers):
    """The worker runs in English; the learner reads German (and another learner English)."""
    fake_providers(fake1={"capacity_error": True}, fake2={"capacity_error": True})
    stack = Stack.objects.create(name="hx-i18n", course_id="c", anonymous_user_id="a", status=states.LAUNCH_PENDING)
    Stack.objects.filter(pk=stack.pk).update(spec={"template": "t.yaml", "providers": []}, attempt=1)
    with translation.override("en"):
        lifecycle._give_up(stack.pk, 1, states.LAUNCH_ERROR, messages.Message("launch.no_provider"))
    stack.refresh_from_db()
    assert json.loads(stack.error_msg)["code"] == "launch.no_provider"  # no language in the database
    with translation.override("de"):
        assert (
            labs.view(stack)["error_msg"]
            == "Zurzeit ist keine Lab-Umgebung verfügbar. Bitte versuchen Sie es später erneut."
        )
    with translation.override("en"):
        assert labs.view(stack)["error_msg"].startswith("No lab environment is available right now.")


@pytest.mark.django_db(transaction=True)
def test_a_check_result_is_shown_in_the_learners_language():
    stack = Stack.objects.create(name="hx-check-i18n", course_id="c", anonymous_user_id="a")
    timed_out = {"passed": False, "hint": messages.stored("check.test_timed_out", seconds=5), "timed_out": True}
    failed = {"passed": False, "hint": "Create notes.txt first.", "timed_out": False}
    check = Check.objects.create(
        stack=stack,
        block_id="b",
        tests=["a", "b"],
        total=2,
        passed=0,
        status=Check.DONE,
        results=[timed_out, failed],
        deadline=stack.created_at,
    )
    with translation.override("de"):
        view = checks.view(check, show_feedback=True, show_hints_on_error=True)
    assert view["message"] == "Sie haben 0 von 2 Aufgaben erledigt."
    assert view["hints"] == [
        "Diese Aufgabe konnte nicht geprüft werden: Ihr Test wurde nicht innerhalb von 5 Sekunden fertig.",
        "Create notes.txt first.",  # the author's own words stay as they are
    ]
    Check.objects.filter(pk=check.pk).update(status=Check.ERROR, error_msg=messages.stored("check.unreachable"))
    check.refresh_from_db()
    with translation.override("de"):
        assert "nicht erreichbar" in checks.view(check, show_feedback=True, show_hints_on_error=True)["error_msg"]


@pytest.mark.django_db(transaction=True)
def test_the_learners_page_is_german_and_loads_the_namespaced_catalog():
    block = make_block("lernende")
    assert block.i18n_js_namespace == "HastexoXBlockI18N"
    with translation.override("de"):
        frag = block.student_view({})
    assert "Lab zurücksetzen" in frag.content and "Ihr Lab wird gestartet" in frag.content
    urls = [resource.data for resource in frag.resources if resource.kind == "url"]
    catalog = next(url for url in urls if "translations/de/text.js" in url)
    assert urls.index(catalog) < next(i for i, url in enumerate(urls) if url.endswith("js/hastexo.js"))
    with translation.override("en"):
        assert not any("translations/" in r.data for r in block.student_view({}).resources if r.kind == "url")


@pytest.mark.django_db(transaction=True)
def test_the_platforms_own_js_catalog_wins(monkeypatch):
    """The LMS serves catalogs it compiled for ``i18n_js_namespace``; then that one is loaded."""
    block = make_block("lernende")
    service = block.runtime.service(block, "i18n")
    monkeypatch.setattr(
        type(service),
        "get_javascript_i18n_catalog_url",
        lambda self, xblock: "/static/js/xblock.v1-i18n/hastexo/de.js",
        raising=False,
    )
    with translation.override("de"):
        urls = [r.data for r in block.student_view({}).resources if r.kind == "url"]
    assert "/static/js/xblock.v1-i18n/hastexo/de.js" in urls and not any("translations/de" in u for u in urls)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_js_catalog_translates_and_picks_german_plurals():
    script = (
        "globalThis.window = globalThis;"
        f"require({os.path.join(ROOT, 'hastexo_xblock/static/js/translations/de/text.js')!r});"
        "const t = globalThis.HastexoXBlockI18N;"
        "console.log(JSON.stringify([t.gettext('Your lab is ready.'), t.gettext('not in the catalog'),"
        " t.ngettext('Connection lost. Reconnecting in %(seconds)s second…',"
        " 'Connection lost. Reconnecting in %(seconds)s seconds…', 1),"
        " t.ngettext('Connection lost. Reconnecting in %(seconds)s second…',"
        " 'Connection lost. Reconnecting in %(seconds)s seconds…', 3)]));"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30, check=True).stdout
    assert json.loads(out) == [
        "Ihr Lab ist bereit.",
        "not in the catalog",
        "Verbindung unterbrochen. Neuer Verbindungsversuch in %(seconds)s Sekunde …",
        "Verbindung unterbrochen. Neuer Verbindungsversuch in %(seconds)s Sekunden …",
    ]
