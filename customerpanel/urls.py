from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from imports.tus import UploadCreateView, UploadDetailView

from . import views
from .api import not_found, router

admin.site.site_header = "Customer Panel administration"
admin.site.site_title = "Customer Panel admin"

urlpatterns = [
    path("", include("customers.urls")),
    path("imports/", include("imports.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/uploads/", UploadCreateView.as_view(), name="upload-list"),
    path("api/v1/uploads/<uuid:pk>/", UploadDetailView.as_view(), name="upload-detail"),
    path("api/v1/", include(router.urls)),
    path("api/v1/auth/", include("rest_framework.urls", namespace="rest_framework")),
    # DRF views skip LoginRequiredMiddleware and answer 401/403 themselves;
    # people opening the docs page get the login page instead.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        login_required(SpectacularSwaggerView.as_view(url_name="schema")),
        name="api-docs",
    ),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    re_path(r"^api/", not_found, name="api-not-found"),
]
