"""Offset pagination for tables in pages."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from flask import request

from app.web.bounds import whole_number


def page_number(name: str = "page") -> int:
    """The requested page (1-based); anything odd means the first page."""
    return whole_number(request.args.get(name, "1"), 1) or 1


@dataclass
class Page:
    """One page of a longer list, with what the pager needs."""

    items: list[Any]
    number: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.per_page

    @property
    def has_prev(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def first_index(self) -> int:
        return self.offset + 1 if self.total else 0

    @property
    def last_index(self) -> int:
        return min(self.offset + self.per_page, self.total)
