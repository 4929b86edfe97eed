"""The original's handler names on the block: ``get_check_status`` and ``launch_new_window``.

A mixin of :class:`~hastexo_xblock.block.HastexoXBlock`, kept apart from the
block's own handlers; the contracts are in ``handlers.py``.  It uses the
block's helpers (``_stack``, ``_check_view``, ``_latest_check_view``,
``_refuse_in_studio``, ``_text``, ``student_view``).
"""

from __future__ import annotations

from typing import Any

from webob import Response
from xblock.core import XBlock
from xblock.exceptions import JsonHandlerError
from xblock.utils.resources import ResourceLoader

from .. import checks, inputs
from ..models import Check
from . import handlers as original_handlers
from . import state as original_state

loader = ResourceLoader("hastexo_xblock.block")

#: What the page of ``launch_new_window`` calls (it has no XBlock runtime of its own).
WINDOW_HANDLERS = ("get_user_stack_status", "keepalive", "set_port", "get_ticket")


class OriginalHandlersMixin:
    """``get_check_status`` (report the learner's check, or start one) and ``launch_new_window``."""

    @XBlock.handler
    @inputs.json_handler()
    def get_check_status(self, data: Any, suffix: str = "") -> dict[str, Any]:
        """``{}``: the original's handler: report the learner's check, or start one when none is running.

        For pages and integrations written for the original hastexo XBlock;
        the answer has the original's shape (see ``legacy/handlers.py``).
        """
        inputs.fields_of(data, {})
        self._refuse_in_studio()
        if original_state.is_original_check(self.check_id):
            return original_handlers.original_view(self._latest_check_view())
        stack = self._stack()
        check = checks.current(stack, self._block_id(), self.check_id)
        if check is None or not (check.status in Check.ACTIVE or original_handlers.first_report(check)):
            try:
                check = checks.start(stack, self._block_id(), list(self.tests))
            except checks.CheckError as error:
                return original_handlers.original_view({"status": Check.ERROR, "error_msg": str(error)})
            self.check_id = check.pk
        return original_handlers.original_view(self._check_view(check))

    @XBlock.handler
    def launch_new_window(self, request, suffix: str = "") -> Response:
        """The original's full-window lab page: the learner's lab alone, on a page of its own.

        The page runs the same script as the unit, with the handler URLs of
        this block; the LMS has authenticated the learner before calling
        this handler, and every value on the page is escaped.
        """
        try:
            self._refuse_in_studio()
        except JsonHandlerError as refused:  # a page, not JSON: answer with the message all the same
            return Response(json_body={"error": refused.message}, status=refused.status_code)
        frag = self.student_view({"hastexo_window": True})
        body = loader.render_django_template(
            "templates/hastexo_window.html",
            {
                "title": self.display_name,
                "content": frag.body_html(),
                "head": frag.head_html(),
                "foot": frag.foot_html(),
                "init": {
                    "init_fn": frag.js_init_fn,
                    "init_args": frag.json_init_args,
                    "handler_urls": {name: self.runtime.handler_url(self, name) for name in WINDOW_HANDLERS},
                },
            },
            i18n_service=self.runtime.service(self, "i18n"),
        )
        response = Response(body, content_type="text/html", charset="utf-8")
        response.headers["Cache-Control"] = "no-store"
        return response
