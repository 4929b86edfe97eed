"""The ``hastexo`` XBlock: fields, views and JSON handlers — thin; decisions live in ``labs.py``.

Field names and meanings are those of the original hastexo XBlock, so that
existing OLX imports unchanged.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.utils import translation
from web_fragments.fragment import Fragment
from webob import Response
from xblock.core import XBlock
from xblock.exceptions import JsonHandlerError
from xblock.fields import Boolean, Dict, Float, Integer, List, Scope, String
from xblock.scorable import ScorableXBlockMixin, Score
from xblock.utils.resources import ResourceLoader
from xblock.utils.settings import XBlockWithSettingsMixin
from xblock.utils.studio_editable import StudioContainerWithNestedXBlocksMixin, StudioEditableXBlockMixin

from . import checks, compat, fields, inputs, labs, olx, xml_attributes
from .conf import get_settings
from .legacy import state as original_state
from .legacy.block_handlers import OriginalHandlersMixin
from .studio_views import StudioMixin

log = logging.getLogger(__name__)
loader = ResourceLoader(__name__)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

_ = lambda text: text  # noqa: E731 -- marks field strings for extraction; translated at display


def translation_candidates(language: str | None) -> list[str]:
    """Catalog directory names to try for ``language`` (``de-ch`` → ``de_CH``, ``de``)."""
    if not language:
        return []
    locale = translation.to_locale(language)
    return [locale, locale.split("_")[0]] if "_" in locale else [locale]


def _json_error(message: str, status: int) -> Response:
    return Response(json_body={"error": message}, status=status)


_FIELD_CLASSES = {"text": String, "choice": String, "int": Integer, "float": Float, "bool": Boolean, "list": List}


def _author_field(name: str):
    """The XBlock field of author field ``name``, built from its one definition in ``fields.py``."""
    spec = fields.BY_NAME[name]
    options = {"values": list(spec.choices)} if spec.choices else {}
    return _FIELD_CLASSES.get(spec.kind, Dict)(
        display_name=spec.label,
        default=spec.default,
        scope=Scope.content if spec.content else Scope.settings,
        help=spec.help,
        **options,
    )


_NOT_IN_STUDIO = _("Labs do not run in Studio. Preview the unit in the LMS to try the lab.")


@XBlock.needs("user")
@XBlock.wants("settings")
@XBlock.needs("i18n")
@XBlock.wants("mako")  # Studio's container page renders the children through it
class HastexoXBlock(
    OriginalHandlersMixin,
    StudioMixin,
    ScorableXBlockMixin,
    XBlockWithSettingsMixin,
    StudioContainerWithNestedXBlocksMixin,
    StudioEditableXBlockMixin,
    XBlock,
):
    """A lab environment (one or many VMs) for the learner, inside the unit.

    In Studio the block is a container (``StudioContainerWithNestedXBlocksMixin``):
    ``author_view`` shows the settings and a preview, and on the block's own
    page the child blocks (the instructions) with Studio's add, edit, move and
    delete controls.  No lab is launched from Studio (see :meth:`_refuse_in_studio`).
    """

    block_settings_key = "hastexo"
    i18n_js_namespace = "HastexoXBlockI18N"  # the JavaScript catalog's global (static/js/translations/)
    has_children = True
    has_author_view = True  # Studio renders author_view, never the learner's view that launches a lab
    has_score = True
    public_dir = "static"
    resources_dir = ""

    # The author fields, as fields.py defines them (type, default, label, help, choices).
    display_name = _author_field("display_name")
    weight = _author_field("weight")
    stack_user_name = _author_field("stack_user_name")
    stack_protocol = _author_field("stack_protocol")
    stack_template_path = _author_field("stack_template_path")
    launch_timeout = _author_field("launch_timeout")
    suspend_timeout = _author_field("suspend_timeout")
    stack_key_type = _author_field("stack_key_type")
    delete_age = _author_field("delete_age")
    read_only = _author_field("read_only")
    hidden = _author_field("hidden")
    ports = _author_field("ports")
    providers = _author_field("providers")
    provider = _author_field("provider")
    tests = _author_field("tests")
    hook_script = _author_field("hook_script")
    hook_events = _author_field("hook_events")
    progress_check_label = _author_field("progress_check_label")
    show_feedback = _author_field("show_feedback")
    show_hints_on_error = _author_field("show_hints_on_error")
    progress_check_result_heading = _author_field("progress_check_result_heading")
    enable_fullscreen = _author_field("enable_fullscreen")

    # Attributes of the OLX that are not this block's and not the platform's: kept for export (xml_attributes.py).
    unknown_attributes = Dict(default={}, scope=Scope.settings, help=_("OLX attributes kept as they came"))

    # The learner's choices and results.
    port = Integer(default=None, scope=Scope.user_state, help=_("Port the learner selected"))
    # A Check id; a learner's state from the original holds its Celery task id here (see legacy/state.py).
    check_id = original_state.CheckRef(
        default=None, scope=Scope.user_state, help=_("The learner's latest progress check")
    )
    score = Dict(default={}, scope=Scope.user_state, help=_("Raw score of the latest check: earned, possible"))

    editable_fields = fields.STUDIO_FIELDS

    # --- helpers ---------------------------------------------------------------

    def _spec(self) -> labs.LabSpec:
        return labs.LabSpec(
            template=self.stack_template_path,
            providers=[dict(p) for p in self.providers],
            ssh_user=self.stack_user_name,
            protocol=self.stack_protocol,
            key_type=self.stack_key_type,
            launch_timeout=self.launch_timeout,
            suspend_timeout=self.suspend_timeout,
            delete_age=self.delete_age,
            ports=[dict(p) for p in self.ports],
            hook_script=self.hook_script,
            hook_events={event: bool(on) for event, on in (self.hook_events or {}).items()},
            provider=self.provider,
        )

    def _stack(self):
        # The user is looked up only if the row has to be created: a status poll stays one query.
        return labs.get_stack(compat.course_id(self), compat.anonymous_user_id(self), lambda: compat.django_user(self))

    def _text(self, message: str) -> str:
        """``message`` in the current user's language (empty stays empty: gettext("") is the catalog header)."""
        return self.runtime.service(self, "i18n").gettext(message) if message else message

    def _js_catalog_url(self) -> str | None:
        """The page's JavaScript catalog (``i18n_js_namespace``), in the active language; ``None`` for English.

        The LMS serves one it compiled itself (``get_javascript_i18n_catalog_url``,
        OEP-58 translations); otherwise the one this package ships is used.
        """
        service = self.runtime.service(self, "i18n")
        platform_catalog = getattr(service, "get_javascript_i18n_catalog_url", None)
        url = platform_catalog(self) if platform_catalog else None
        if url:
            return url
        for lang in translation_candidates(translation.get_language()):
            if os.path.exists(os.path.join(_PACKAGE_DIR, "static", "js", "translations", lang, "text.js")):
                return self.runtime.local_resource_url(self, f"static/js/translations/{lang}/text.js")
        return None

    def _refuse_in_studio(self) -> None:
        """Refuse lab actions in Studio: every author there shares one anonymous id, so one shared lab."""
        if compat.in_studio(self):
            raise JsonHandlerError(409, self._text(_NOT_IN_STUDIO))

    def _fullscreen(self) -> bool:
        if self.enable_fullscreen == "inherit":
            return bool(get_settings()["enable_fullscreen"])
        return self.enable_fullscreen == "true"

    # --- views -----------------------------------------------------------------

    def student_view(self, context: dict | None = None) -> Fragment:
        """The lab unit for the learner: instructions, the lab area, the controls.

        Where the runtime is Studio's (``is_author_mode``: a library or an
        older Studio that asks for the learner's view), the author's preview
        is shown instead, so that no page in Studio ever starts a lab.
        """
        if compat.in_studio(self):
            return self.author_preview_view(context or {})
        settings = get_settings()
        # The page of launch_new_window: the lab alone, as in the original's full-window view.
        window = bool((context or {}).get("hastexo_window"))
        check_on_load = False
        if self.tests and self.check_id and not window:
            # Record a check that finished after the learner left the page.  Its hints are the learner's
            # own scripts' output: the page fetches them from check_status (JSON, shown as text), they
            # are never put into the init args, which the runtime writes into a <script> unescaped.
            # The original's interrupted check is reported once, by that check_status call.
            check_on_load = (
                original_state.is_original_check(self.check_id) or self._latest_check_view()["status"] != "none"
            )
        frag = Fragment()
        children_html = []
        for child_id in [] if window else self.children:
            child = self.runtime.get_block(child_id)
            child_frag = child.render("student_view", context or {})
            frag.add_fragment_resources(child_frag)
            children_html.append(child_frag.content)
        frag.add_content(
            loader.render_django_template(
                "templates/hastexo_student.html",
                {
                    "display_name": self._text(self.display_name),
                    "hidden": self.hidden,
                    "instructions_layout": settings["instructions_layout"],
                    "children_html": "".join(children_html),
                    # The defaults are in the catalog; an author's own text passes through unchanged.
                    "progress_check_label": self._text(self.progress_check_label),
                    "show_check": bool(self.tests) and not window,
                    "progress_check_result_heading": self._text(self.progress_check_result_heading),
                    "ports": fields.offered_entries(self.ports),
                    # A desktop lab's selector also offers a terminal of the same lab (get_ticket's terminal).
                    "desktop": self.stack_protocol != "ssh",
                },
                i18n_service=self.runtime.service(self, "i18n"),
            )
        )
        for path in ("vendor/xterm/xterm.css", "css/hastexo.css"):
            frag.add_css_url(self.runtime.local_resource_url(self, f"static/{path}"))
        catalog_url = self._js_catalog_url()
        if catalog_url:
            frag.add_javascript_url(catalog_url)  # before hastexo.js, which reads it
        for path in ("vendor/xterm/xterm.js", "vendor/xterm/addon-fit.js", "js/hastexo.js"):
            frag.add_javascript_url(self.runtime.local_resource_url(self, f"static/{path}"))
        frag.initialize_js(
            "HastexoXBlock",
            {
                "js_timeouts": settings["js_timeouts"],
                "terminal": {
                    "font_name": settings["terminal_font_name"],
                    "font_size": settings["terminal_font_size"],
                    "color_scheme": settings["terminal_color_scheme"],
                    "theme": settings.terminal_theme,
                },
                "read_only": self.read_only,
                "hidden": self.hidden,
                "port": self.port,
                "enable_fullscreen": self._fullscreen(),
                "has_tests": bool(self.tests),
                # Nothing a learner wrote goes here (see check_on_load above).
                "check_on_load": check_on_load,
                "protocol": self.stack_protocol,
                # Desktop labs (vnc, rdp): the vendored clients, imported by the page only when it shows a desktop.
                "desktop": {
                    "resize_method": settings["lab_resize_method"],
                    "novnc_url": self.runtime.local_resource_url(self, "static/vendor/novnc/novnc.js"),
                    "guacamole_url": self.runtime.local_resource_url(self, "static/vendor/guacamole/guacamole.js"),
                },
            },
        )
        return frag

    # --- handlers --------------------------------------------------------------

    # Every JSON handler reads its body with inputs.json_handler: bounded in size and depth, and typed.

    @XBlock.handler
    @inputs.json_handler()
    def get_user_stack_status(self, data: Any, suffix: str = "") -> dict[str, Any]:
        """``{initialize?, reset?}`` (JSON booleans) → ``{status, error_msg, name, up, pending, phase, …}``."""
        flags = inputs.fields_of(data, {"initialize": inputs.boolean, "reset": inputs.boolean})
        self._refuse_in_studio()
        return labs.status(
            self._stack(), self._spec(), initialize=flags.get("initialize", False), reset=flags.get("reset", False)
        )

    @XBlock.handler
    @inputs.json_handler()
    def keepalive(self, data: Any, suffix: str = "") -> dict[str, Any]:
        """``{}``: keep the learner's lab from being suspended while the unit is open."""
        inputs.fields_of(data, {})
        self._refuse_in_studio()
        labs.keepalive(self._stack())
        return {}

    @XBlock.handler
    @inputs.json_handler()
    def set_port(self, data: Any, suffix: str = ""):
        """``{port}`` → ``{port}``: select one of the configured ports (``null``: the lab's default).

        The choice is remembered for the learner and on their stack; the
        next ticket (the page reconnects at once) carries it.
        """
        port = inputs.fields_of(data, {"port": inputs.optional_port}, required=("port",))["port"]
        if not fields.port_offered(port, list(self.ports)):
            return _json_error("port is not one of the lab's ports", 400)
        self.port = port
        labs.set_port(self._stack(), port)
        return {"port": port}

    @XBlock.handler
    @inputs.json_handler(pass_request=True)
    def get_ticket(self, data: Any, suffix: str = "", request: Any = None) -> Response:
        """``{terminal?}`` → ``{url, protocol}``: mint a gateway ticket for the learner's running lab.

        ``terminal: true`` asks for a terminal (SSH) of a desktop lab, as the
        page's selector offers; otherwise the ticket is for the lab's own
        protocol and the learner's chosen port.
        """
        terminal = inputs.fields_of(data, {"terminal": inputs.boolean}).get("terminal", False)
        if compat.in_studio(self):
            return _json_error(self._text(_NOT_IN_STUDIO), 409)
        stack = self._stack()
        try:
            url, protocol = labs.ticket_url(
                stack,
                actor=compat.acting_user_id(self),
                read_only=self.read_only,
                port=self.port,
                terminal=terminal,
                base_url=labs.page_origin(request.headers, request.scheme, request.host),
            )
        except labs.LabError as error:
            return _json_error(str(error), 409)
        return Response(json_body={"url": url, "protocol": protocol}, headerlist=[("Cache-Control", "no-store")])

    @XBlock.handler
    @inputs.json_handler()
    def check_progress(self, data: Any, suffix: str = ""):
        """``{}``: start a progress check (or return the one running): the :meth:`check_status` JSON."""
        inputs.fields_of(data, {})
        self._refuse_in_studio()
        try:
            check = checks.start(self._stack(), self._block_id(), list(self.tests))
        except checks.CheckError as error:
            return _json_error(str(error), 409)
        self.check_id = check.pk
        return self._check_view(check)

    @XBlock.handler
    @inputs.json_handler()
    def check_status(self, data: Any, suffix: str = "") -> dict[str, Any]:
        """``{}``: the learner's latest check: ``{status, message, pass, total, hints, error_msg}`` (``checks.view``).

        A finished check's score is stored and published here, once.
        """
        inputs.fields_of(data, {})
        return self._latest_check_view()

    # --- scoring -----------------------------------------------------------------

    def _block_id(self) -> str:
        return str(self.scope_ids.usage_id)

    def _latest_check_view(self) -> dict[str, Any]:
        """The learner's latest check (recorded if it has finished); a check the original left is reported once."""
        if original_state.is_original_check(self.check_id):
            self.check_id = None
            return original_state.interrupted_check()
        return self._check_view(checks.current(self._stack(), self._block_id(), self.check_id))

    def _check_view(self, check) -> dict[str, Any]:
        if check is not None and check.status == check.DONE:
            self._record(check)
        return checks.view(check, show_feedback=self.show_feedback, show_hints_on_error=self.show_hints_on_error)

    def _record(self, check) -> None:
        """Store a finished check's score and publish the grade (once per check).

        The score has the original's scale: ``weight`` points possible, and
        the share of tests passed of them earned.
        """
        if checks.claim_recording(check):
            earned, possible = original_state.weighted(
                {"raw_earned": check.passed, "raw_possible": check.total}, self._weight()
            ) or (0.0, 0.0)
            score = Score(raw_earned=earned, raw_possible=possible)
            self.set_score(score)
            self._publish_grade(score)

    def _weight(self) -> float:
        return 1.0 if self.weight is None else max(0.0, float(self.weight))

    def max_score(self) -> float:
        """Points possible: ``weight``, as in the original; a lab without tests is not graded (0)."""
        return self._weight() if self.tests else 0.0

    def has_submitted_answer(self) -> bool:
        return bool(self.score)

    def get_score(self) -> Score:
        """The latest recorded score on the ``weight`` scale, whichever block stored it."""
        stored = original_state.weighted(self.score, self._weight())
        if stored is None:
            return Score(raw_earned=0.0, raw_possible=self.max_score())
        return Score(raw_earned=stored[0], raw_possible=stored[1])

    def set_score(self, score: Score) -> None:
        self.score = {"raw_earned": float(score.raw_earned), "raw_possible": float(score.raw_possible)}

    def calculate_score(self) -> Score:
        """The latest recorded check's result (rescoring does not run the tests again)."""
        return self.get_score()

    # --- OLX -------------------------------------------------------------------------

    @classmethod
    def parse_xml(cls, node, runtime, keys, id_generator=None):
        """Build the block from ``<hastexo>`` OLX, inline or pointer form (format: ``olx.py``).

        ``id_generator`` is accepted and unused: Studio's paste passes it
        positionally on the releases before XBlock dropped it.

        Raises :class:`olx.OLXError` naming the element and problem for malformed OLX.
        Child elements that are not lab settings become child blocks.
        """
        parsed = olx.parse(node, load_file=olx.loader_for(runtime), known_providers=get_settings()["providers"])
        block = runtime.construct_xblock_from_class(cls, keys)
        for name, value in parsed.fields.items():
            setattr(block, name, value)
        xml_attributes.apply(block, parsed.unknown_attributes, fields.NAMES, olx.describe(node))
        for warning in parsed.warnings:
            log.warning("%s (imported anyway: Studio's validation and the lab's launch report it)", warning)
        for child in parsed.children:
            runtime.add_node_as_child(block, child)
        return block

    def add_xml_to_node(self, node) -> None:
        """Export as ``<hastexo>`` with every field written (see ``olx.export_into``), then the child blocks."""
        values = {name: getattr(self, name) for name in fields.NAMES}
        tag = self.scope_ids.block_type if self.scope_ids.block_type in olx.TAGS else olx.TAG
        olx.export_into(node, values, extra_attributes={"xblock-family": self.entry_point}, tag=tag)
        xml_attributes.export(self, node, fields.NAMES)
        for child_id in self.children:
            self.runtime.add_block_as_child_node(self.runtime.get_block(child_id), node)

    # --- workbench ---------------------------------------------------------------

    @staticmethod
    def workbench_scenarios() -> list[tuple[str, str]]:
        """The demo scenarios: "Linux basics" (a terminal), "Linux desktop" (VNC) and that desktop read-only.

        Templates come from the ``template_dir`` setting.

        The workbench's ``html_demo`` block treats ``$`` as a template
        placeholder, hence ``$$`` for a literal dollar sign.
        """
        return [
            (
                "Linux basics",
                """
                <vertical_demo>
                  <hastexo display_name="Linux basics" stack_template_path="linux-basics.yaml"
                           stack_user_name="learner" hook_script="linux-basics-hook.sh">
                    <test><![CDATA[
                      if ! [ -f ~/notes.txt ]; then
                        echo "There is no file notes.txt in your home directory yet." >&2
                        exit 1
                      fi
                      if ! grep -qx "I was here" ~/notes.txt; then
                        echo "notes.txt does not have a line that reads exactly: I was here" >&2
                        exit 1
                      fi
                    ]]></test>
                    <test><![CDATA[
                      script=~/projects/hello.sh
                      if ! [ -x "$script" ]; then
                        echo "projects/hello.sh does not exist or is not executable (try chmod +x)." >&2
                        exit 1
                      fi
                      printed=$("$script" 2>&1 | head -c 300)
                      if [ "$printed" != "Hello, world" ]; then
                        echo "projects/hello.sh should print: Hello, world" >&2
                        echo "It printed: $printed" >&2
                        exit 1
                      fi
                    ]]></test>
                    <hook_events suspend="true" resume="true" delete="false"/>
                    <html_demo><div>
                      <h2>Linux basics</h2>
                      <p>Your own Linux lab starts below. When the prompt appears, try
                         <code>ls</code>, <code>cat welcome.txt</code> and
                         <code>echo $$((6*7))</code>. Then do these two tasks:</p>
                      <ol>
                        <li>Create a file <code>notes.txt</code> in your home directory
                            with the line <code>I was here</code>.</li>
                        <li>Write a script <code>projects/hello.sh</code> that prints
                            <code>Hello, world</code>, and make it executable.</li>
                      </ol>
                      <p>Click <b>Check Progress</b> to see how you are doing. Leave the page and come
                         back later: your lab is paused and resumed as you left it (see
                         <code>.lab-events</code>).</p>
                    </div></html_demo>
                  </hastexo>
                </vertical_demo>
                """,
            ),
            (
                "Linux desktop",
                """
                <vertical_demo>
                  <hastexo display_name="Linux desktop" stack_template_path="linux-desktop.yaml"
                           stack_user_name="learner" stack_protocol="vnc">
                    <html_demo><div>
                      <h2>Linux desktop</h2>
                      <p>A graphical desktop of your own lab starts below, with a terminal window.
                         Click into the terminal and type, for example <code>ls</code> or
                         <code>cat welcome.txt</code>. <b>Send keys</b> sends the keys your browser keeps
                         for itself (such as Ctrl+Alt+Del); <b>Clipboard</b> copies text to and from the lab.</p>
                    </div></html_demo>
                  </hastexo>
                </vertical_demo>
                """,
            ),
            (
                "Linux desktop, read-only",
                """
                <vertical_demo>
                  <hastexo display_name="Linux desktop, read-only" stack_template_path="linux-desktop.yaml"
                           stack_user_name="learner" stack_protocol="vnc" read_only="true">
                    <html_demo><div>
                      <p>The same desktop as in "Linux desktop", watched only: the picture follows the lab,
                         but keys, clicks and the clipboard do not reach it (the gateway drops them).</p>
                    </div></html_demo>
                  </hastexo>
                </vertical_demo>
                """,
            ),
        ]
