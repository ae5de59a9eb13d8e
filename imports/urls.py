from django.urls import path

from . import views

app_name = "imports"

urlpatterns = [
    path("", views.import_list, name="list"),
    path("upload/", views.import_upload, name="upload"),
    path("from-folder/", views.import_from_folder, name="from_folder"),
    path("<int:pk>/", views.import_detail, name="detail"),
    path("<int:pk>/cancel/", views.import_cancel, name="cancel"),
    path("<int:pk>/resume/", views.import_resume, name="resume"),
    path("<int:pk>/again/", views.import_again, name="again"),
    path("<int:pk>/for-real/", views.import_for_real, name="for_real"),
    path("<int:pk>/errors.csv", views.import_errors_csv, name="errors"),
]
