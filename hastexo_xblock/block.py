"""The ``hastexo`` XBlock: fields, views and JSON handlers — thin; decisions live in ``labs.py``.

Field names and meanings are those of the original hastexo XBlock, so that
existing OLX imports unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from web_fragments.fragment import Fragment
from webob import Response
from xblock.core import XBlock
from xblock.fields import Boolean, Dict, Float, Integer, List, Scope, String
from xblock.utils.resources import ResourceLoader
from xblock.utils.settings import XBlockWithSettingsMixin
from xblock.utils.studio_editable import StudioEditableXBlockMixin

from . import compat, labs, olx
from .conf import get_settings

log = logging.getLogger(__name__)
loader = ResourceLoader(__name__)

_ = lambda text: text  # noqa: E731 -- marks field strings for extraction; translated at display


def _json_error(message: str, status: int) -> Response:
    return Response(json_body={"error": message}, status=status)


@XBlock.needs("user")
@XBlock.wants("settings")
@XBlock.needs("i18n")
class HastexoXBlock(XBlockWithSettingsMixin, StudioEditableXBlockMixin, XBlock):
    """A lab environment (one or many VMs) for the learner, inside the unit."""

    block_settings_key = "hastexo"
    has_children = True
    has_score = False  # grading arrives with progress checks
    public_dir = "static"
    resources_dir = ""

    display_name = String(default=_("Lab"), scope=Scope.settings, help=_("Title of the lab unit"))
    weight = Float(default=1, scope=Scope.settings, help=_("Weight of this lab in grading"))
    stack_user_name = String(default="", scope=Scope.settings, help=_("User name to log in to the lab as"))
    stack_protocol = String(
        default="ssh", scope=Scope.settings, values=["ssh", "rdp", "vnc"], help=_("How the learner reaches the lab")
    )
    stack_template_path = String(default="", scope=Scope.settings, help=_("Template file in the course's files"))
    launch_timeout = Integer(default=None, scope=Scope.settings, help=_("Seconds a launch may take (setting if empty)"))
    suspend_timeout = Integer(
        default=None, scope=Scope.settings, help=_("Idle seconds before the lab is suspended (setting if empty)")
    )
    stack_key_type = String(default="", scope=Scope.settings, help=_("Key pair for the lab: '', 'rsa' or 'ed25519'"))
    delete_age = Integer(
        default=None, scope=Scope.settings, help=_("Seconds a suspended lab is kept before deletion (setting if empty)")
    )
    read_only = Boolean(default=False, scope=Scope.settings, help=_("Show the lab without accepting input"))
    hidden = Boolean(default=False, scope=Scope.settings, help=_("Launch the lab without showing it"))
    ports = List(default=[], scope=Scope.settings, help=_("Ports the learner may choose: [{name, number}]"))
    providers = List(
        default=[], scope=Scope.settings, help=_("Providers in order: [{name, capacity, template, environment}]")
    )
    tests = List(default=[], scope=Scope.content, help=_("Progress check scripts"))
    hook_script = String(default="", scope=Scope.settings, help=_("Script run on lifecycle events"))
    hook_events = Dict(default={}, scope=Scope.settings, help=_("Events the hook runs on: suspend, resume, delete"))
    progress_check_label = String(default=_("Check Progress"), scope=Scope.settings)
    show_feedback = Boolean(default=True, scope=Scope.settings)
    show_hints_on_error = Boolean(default=True, scope=Scope.settings)
    progress_check_result_heading = String(default=_("Progress check result"), scope=Scope.settings)
    enable_fullscreen = String(
        default="inherit",
        scope=Scope.settings,
        values=["true", "false", "inherit"],
        help=_("Offer a full-window view of the lab ('inherit' follows the setting)"),
    )

    # The learner's choices.
    port = Integer(default=None, scope=Scope.user_state, help=_("Port the learner selected"))

    editable_fields = (
        "display_name",
        "weight",
        "stack_template_path",
        "stack_user_name",
        "stack_protocol",
        "stack_key_type",
        "launch_timeout",
        "suspend_timeout",
        "delete_age",
        "read_only",
        "hidden",
        "enable_fullscreen",
        "progress_check_label",
        "show_feedback",
        "show_hints_on_error",
        "progress_check_result_heading",
    )

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
        )

    def _stack(self):
        return labs.get_stack(compat.course_id(self), compat.anonymous_user_id(self), compat.django_user(self))

    def _fullscreen(self) -> bool:
        if self.enable_fullscreen == "inherit":
            return bool(get_settings()["enable_fullscreen"])
        return self.enable_fullscreen == "true"

    # --- views -----------------------------------------------------------------

    def student_view(self, context: dict | None = None) -> Fragment:
        """The lab unit for the learner: instructions, the lab area, the controls."""
        settings = get_settings()
        frag = Fragment()
        children_html = []
        for child_id in self.children:
            child = self.runtime.get_block(child_id)
            child_frag = child.render("student_view", context or {})
            frag.add_fragment_resources(child_frag)
            children_html.append(child_frag.content)
        frag.add_content(
            loader.render_django_template(
                "templates/hastexo_student.html",
                {
                    "display_name": self.display_name,
                    "hidden": self.hidden,
                    "instructions_layout": settings["instructions_layout"],
                    "children_html": "".join(children_html),
                    "progress_check_label": self.progress_check_label,
                    "show_check": False,
                    "ports": self.ports,
                },
                i18n_service=self.runtime.service(self, "i18n"),
            )
        )
        for path in ("vendor/xterm/xterm.css", "css/hastexo.css"):
            frag.add_css_url(self.runtime.local_resource_url(self, f"static/{path}"))
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
                },
                "read_only": self.read_only,
                "hidden": self.hidden,
                "port": self.port,
                "ports": self.ports,
                "protocol": self.stack_protocol,
                "enable_fullscreen": self._fullscreen(),
            },
        )
        return frag

    # --- handlers --------------------------------------------------------------

    @XBlock.json_handler
    def get_user_stack_status(self, data: dict[str, Any], suffix: str = "") -> dict[str, Any]:
        """``{initialize, reset}`` → ``{status, error_msg, name, up, pending, phase, progress, …}``."""
        data = data if isinstance(data, dict) else {}
        return labs.status(
            self._stack(), self._spec(), initialize=bool(data.get("initialize")), reset=bool(data.get("reset"))
        )

    @XBlock.json_handler
    def keepalive(self, data: dict[str, Any], suffix: str = "") -> dict[str, Any]:
        """Keep the learner's lab from being suspended while the unit is open."""
        labs.keepalive(self._stack())
        return {}

    @XBlock.json_handler
    def set_port(self, data: dict[str, Any], suffix: str = ""):
        """``{port}`` → ``{port}``: select one of the configured ports."""
        allowed = {int(p["number"]) for p in self.ports if "number" in p}
        try:
            port = int(data.get("port"))
        except (TypeError, ValueError, AttributeError):
            return _json_error("port must be a number", 400)
        if port not in allowed:
            return _json_error("port is not one of the lab's ports", 400)
        self.port = port
        labs.set_port(self._stack(), port)
        return {"port": port}

    @XBlock.handler
    def get_ticket(self, request, suffix: str = "") -> Response:
        """Mint a gateway ticket for the learner's running lab: ``{url}``."""
        if request.method != "POST":
            return _json_error("POST required", 405)
        stack = self._stack()
        try:
            url = labs.ticket_url(
                stack,
                actor=compat.acting_user_id(self),
                read_only=self.read_only,
                port=self.port,
                base_url=request.host_url,
            )
        except labs.LabError as error:
            return _json_error(str(error), 409)
        return Response(json_body={"url": url}, headerlist=[("Cache-Control", "no-store")])

    # --- OLX -------------------------------------------------------------------------

    @classmethod
    def parse_xml(cls, node, runtime, keys):
        """Build the block from ``<hastexo>`` OLX, inline or pointer form (format: ``olx.py``).

        Raises :class:`olx.OLXError` naming the element and problem for malformed OLX.
        Child elements that are not lab settings become child blocks.
        """
        parsed = olx.parse(node, load_file=olx.loader_for(runtime), known_providers=get_settings()["providers"])
        block = runtime.construct_xblock_from_class(cls, keys)
        for name, value in parsed.fields.items():
            setattr(block, name, value)
        for child in parsed.children:
            runtime.add_node_as_child(block, child)
        return block

    def add_xml_to_node(self, node) -> None:
        """Export as ``<hastexo>`` with every field written (see ``olx.export_into``), then the child blocks."""
        values = {name: getattr(self, name) for name in olx.FIELD_NAMES}
        olx.export_into(node, values, extra_attributes={"xblock-family": self.entry_point})
        for child_id in self.children:
            self.runtime.add_block_as_child_node(self.runtime.get_block(child_id), node)

    # --- workbench ---------------------------------------------------------------

    @staticmethod
    def workbench_scenarios() -> list[tuple[str, str]]:
        """The demo scenario "Linux basics" (templates from the ``template_dir`` setting).

        The workbench's ``html_demo`` block treats ``$`` as a template
        placeholder, hence ``$$`` for a literal dollar sign.
        """
        return [
            (
                "Linux basics",
                """
                <vertical_demo>
                  <hastexo display_name="Linux basics" stack_template_path="linux-basics.yaml"
                           stack_user_name="learner">
                    <html_demo><div>
                      <h2>Linux basics</h2>
                      <p>Your own Linux lab starts below. When the prompt appears, try:</p>
                      <ul>
                        <li><code>ls</code> to see the files in your home directory,</li>
                        <li><code>cat welcome.txt</code> to read the welcome note,</li>
                        <li><code>echo $$((6*7))</code> to let the shell do some arithmetic.</li>
                      </ul>
                      <p>Leave the page and come back later: your lab is paused and resumed as you left it.</p>
                    </div></html_demo>
                  </hastexo>
                </vertical_demo>
                """,
            )
        ]
