from django.urls import path

from . import views

app_name = "imports"

urlpatterns = [
    path("", views.import_list, name="list"),
    path("upload/", views.import_upload, name="upload"),
    path("workers/", views.worker_list, name="workers"),
    path("from-folder/", views.import_from_folder, name="from_folder"),
    path("<int:pk>/", views.import_detail, name="detail"),
    path("<int:pk>/review/", views.import_review, name="review"),
    path("<int:pk>/review/start/", views.import_review_start, name="review_start"),
    path("<int:pk>/review/discard/", views.import_review_discard, name="review_discard"),
    path("<int:pk>/cancel/", views.import_cancel, name="cancel"),
    path("<int:pk>/resume/", views.import_resume, name="resume"),
    path("<int:pk>/again/", views.import_again, name="again"),
    path("<int:pk>/for-real/", views.import_for_real, name="for_real"),
    path("<int:pk>/errors.csv", views.import_errors_csv, name="errors"),
    path("<int:pk>/undo/", views.import_undo, name="undo"),
    path("<int:pk>/undo/progress/", views.import_undo_progress, name="undo_progress"),
    path("<int:pk>/undo/cancel/", views.import_undo_cancel, name="undo_cancel"),
    path("<int:pk>/undo/kept.csv", views.import_undo_kept_csv, name="undo_kept"),
]
