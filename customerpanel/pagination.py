"""Pagination shared by every API list."""

from rest_framework.pagination import CursorPagination


class KeysetPagination(CursorPagination):
    """Opaque cursors over the primary key: no COUNT(*), no OFFSET, stable order."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
