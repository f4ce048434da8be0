"""nbgrader exchange plugins for a course that does not use nbgrader's exchange.

This course hands out ``release/<assignment>/`` (notebooks, ``checks.py``, the self-check wheel) and
collects through an LMS (``make grade`` runs ``nbgrader zip_collect``); feedback goes back as one zip
per student (:mod:`torchsteps.grading.archives`). nbgrader's default exchange is a shared folder
(``/usr/local/share/nbgrader/exchange``); when it is absent, every ``NbGraderAPI`` logs "Unwritable
directory, please contact your instructor" and the formgrader's *Manage Assignments* page warns that
"The exchange directory ... does not exist" (nbgrader 0.9.6, ``apps/api.py``,
``formgrader/templates/manage_assignments.tpl``). Set in ``nbgrader_config.py`` through nbgrader's own
``ExchangeFactory``: listing finds nothing (so no warning), and the commands that would move files
through the exchange stop with a message that says what to do instead.
"""

from __future__ import annotations

from nbgrader.exchange.abc import (
    ExchangeCollect,
    ExchangeFetchAssignment,
    ExchangeFetchFeedback,
    ExchangeList,
    ExchangeReleaseAssignment,
    ExchangeReleaseFeedback,
    ExchangeSubmit,
)

__all__ = ["NoExchangeList", "NoReleaseAssignment", "NoCollect", "NoReleaseFeedback", "NoFetchAssignment",
           "NoFetchFeedback", "NoSubmit", "NOT_USED"]

NOT_USED = (
    "this course does not use nbgrader's exchange: hand out release/<assignment>/ (it holds the self-check wheel), "
    "collect with the LMS download (`make grade` runs `nbgrader zip_collect`), and return feedback_zips/<assignment>/"
    "<student>.zip through the LMS (see README, 'Instructor workflow'); remove the ExchangeFactory lines of "
    "nbgrader_config.py to use the exchange instead"
)


class NoExchangeList(ExchangeList):
    """Nothing was released to or submitted through an exchange: an empty list, no warning."""

    def start(self):
        return []


class _Refuse:
    def start(self):
        self.fail(NOT_USED)


class NoReleaseAssignment(_Refuse, ExchangeReleaseAssignment):
    """``nbgrader release_assignment`` (the formgrader's *Release* button) says what to do instead."""


class NoCollect(_Refuse, ExchangeCollect):
    """``nbgrader collect`` says what to do instead."""


class NoReleaseFeedback(_Refuse, ExchangeReleaseFeedback):
    """``nbgrader release_feedback`` says what to do instead."""


class NoFetchAssignment(_Refuse, ExchangeFetchAssignment):
    """A student's ``nbgrader fetch_assignment`` says what to do instead."""


class NoFetchFeedback(_Refuse, ExchangeFetchFeedback):
    """A student's ``nbgrader fetch_feedback`` says what to do instead."""


class NoSubmit(_Refuse, ExchangeSubmit):
    """A student's ``nbgrader submit`` says what to do instead."""
