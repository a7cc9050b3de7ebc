"""The risk console: the dashboard of ``riskloop serve`` (paper 5.3, 4.3.1, 2.3.3).

Server-rendered pages over the store: the executive view with the five indicators of paper
Table 4 and their trends, a risk heat map across models, the inventory with lineage, one page
per model (findings, robustness curve, gate history, approval, report download), live
deployments with drift and alert charts, incidents with their timeline, and the review
queue. Sign-in is with an API token (:mod:`riskloop.service.tokens`); each page offers only
what the token's role may do, and the server checks it again on every action.
"""

from __future__ import annotations

from .routes import router

__all__ = ["router"]
