"""Studio: the block's author views and Studio's Save — a mixin of :class:`~hastexo_xblock.block.HastexoXBlock`.

Kept apart from the learner's side of the block.  What an author may enter
and how it is checked is ``authoring.py`` (pure); this mixin puts it on
Studio's form (lists and mappings as YAML text), its Save handler and the
author views (the settings at a glance with their problems, then the child
blocks).  It comes before XBlock's Studio mixins in the block's bases, whose
methods it extends, and uses the block's ``_text``.
"""

from __future__ import annotations

from typing import Any

from web_fragments.fragment import Fragment
from xblock.core import XBlock
from xblock.exceptions import JsonHandlerError
from xblock.utils.resources import ResourceLoader
from xblock.utils.studio_editable import NestedXBlockSpec, StudioEditableXBlockMixin
from xblock.validation import ValidationMessage

from . import authoring, fields, inputs
from .conf import get_settings

loader = ResourceLoader("hastexo_xblock.block")

_ = lambda text: text  # noqa: E731 -- marks strings for extraction; translated at display

# Studio's "Add New Component" buttons inside the block: category → button label.
_CHILD_LABELS = {"html": _("Text"), "video": _("Video"), "pdf": _("PDF"), "markdown": _("Markdown")}


class StudioMixin:
    """Studio's form, Save and author views for the lab block."""

    def _make_field_info(self, field_name: str, field) -> dict[str, Any]:
        """Studio's form entry for a field; lists and mappings are edited as YAML text."""
        info = super()._make_field_info(field_name, field)
        if field_name in authoring.YAML_FIELDS:
            info["type"] = "text"
            info["value"] = authoring.yaml_text(field.read_from(self))
            info["default"] = authoring.yaml_text(field.default)
        return info

    @XBlock.handler
    @inputs.json_handler(inputs.STUDIO_BODY_LIMIT)
    def submit_studio_edits(self, data: Any, suffix: str = "") -> dict[str, Any]:
        """Studio's Save: check the body and each value's type, parse the YAML-edited fields, validate, save.

        Anything unreadable (a body that is not ``{values, defaults}``, an
        unknown field, a value of the wrong type, YAML with its line and
        column) is refused with 400 before anything is saved; the rules
        between fields then run in ``validate_field_data`` (400, nothing saved).
        """
        try:
            values, defaults = authoring.read_studio_edits(data)
        except authoring.StudioEditsRefused as refused:
            raise JsonHandlerError(
                400, {"messages": [{"type": "error", "text": t} for t in refused.messages]}
            ) from None
        save = StudioEditableXBlockMixin.submit_studio_edits.__wrapped__  # the mixin's handler body
        return save(self, {"values": values, "defaults": defaults}, suffix)

    def validate_field_data(self, validation, data) -> None:
        """Check the values about to be saved (``data``); each problem names the field and what is wrong."""
        values = {name: getattr(data, name) for name in fields.NAMES}
        for problem in authoring.validate(values, known_providers=list(get_settings()["providers"])):
            validation.add(ValidationMessage(ValidationMessage.ERROR, problem.message))

    @property
    def allowed_nested_blocks(self) -> list[NestedXBlockSpec]:
        """Block types authors can add as the lab's instructions: html, and video/pdf/markdown when installed."""
        return [
            NestedXBlockSpec(None, category=name, label=self._text(_CHILD_LABELS[name]))
            for name in authoring.installed_child_types(XBlock.load_class)
        ]

    def _summary_fragment(self, context: dict, children: list[dict[str, str]] | None) -> Fragment:
        """The lab's settings at a glance and its problems; with ``children``, a preview of each child."""
        values = {name: getattr(self, name) for name in fields.NAMES}
        problems = authoring.validate(values, known_providers=list(get_settings()["providers"]))
        frag = Fragment()
        frag.add_content(
            loader.render_django_template(
                "templates/hastexo_author.html",
                {
                    "display_name": self.display_name,
                    "summary": authoring.summary(values),
                    "problems": [problem.message for problem in problems],
                    "show_children": children is not None,
                    "children": children or [],
                    "supported_types": ", ".join(spec.label for spec in self.allowed_nested_blocks),
                },
                i18n_service=self.runtime.service(self, "i18n"),
            )
        )
        frag.add_css_url(self.runtime.local_resource_url(self, "static/css/hastexo-author.css"))
        return frag

    def author_preview_view(self, context: dict | None = None) -> Fragment:
        """Studio's unit page: the lab's settings at a glance, problems first, then the instructions."""
        context = context or {}
        children, resources = [], []
        for child_id in self.children:
            child = self.runtime.get_block(child_id)
            child_frag = self._render_child_fragment(child, context, "preview_view")
            resources.append(child_frag)
            children.append({"type_label": child.scope_ids.block_type, "html": child_frag.content})
        frag = self._summary_fragment(context, children)
        for child_frag in resources:
            frag.add_fragment_resources(child_frag)
        return frag

    def author_edit_view(self, context: dict | None = None) -> Fragment:
        """Studio's page of the block itself: the settings, then the children with Studio's controls.

        The children come wrapped by Studio (``render_children``: edit,
        duplicate, move, delete, drag to reorder), followed by the buttons that
        add an html, video, pdf or markdown child.
        """
        context = context or {}
        frag = self._summary_fragment(context, None)
        children = super().author_edit_view(context)
        frag.add_fragment_resources(children)
        frag.add_content(children.content)
        frag.initialize_js(children.js_init_fn, children.json_init_args)  # the mixin's "add" buttons
        return frag
