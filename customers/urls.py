from django.urls import path
from django.views.generic import RedirectView

from . import views

app_name = "customers"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="customers:list"), name="home"),
    path("customers/", views.customer_list, name="list"),
    path("customers/new/", views.customer_create, name="create"),
    path("customers/export/", views.customer_export, name="export"),
    path("customers/exports/", views.export_list, name="exports"),
    path("customers/exports/start/", views.export_start, name="export_start"),
    path("customers/exports/<int:pk>/", views.export_detail, name="export_detail"),
    path("customers/exports/<int:pk>/cancel/", views.export_cancel, name="export_cancel"),
    path("customers/exports/<int:pk>/download/", views.export_download, name="export_download"),
    path("customers/<int:pk>/", views.customer_detail, name="detail"),
    path("customers/<int:pk>/edit/", views.customer_update, name="update"),
    path("customers/<int:pk>/delete/", views.customer_delete, name="delete"),
    path(
        "customers/<int:pk>/clear-edited/",
        views.customer_clear_manual_edit,
        name="clear_manual_edit",
    ),
]
