from django.urls import path

from frontend import views

app_name = "frontend"

urlpatterns = [
    path("", views.projects, name="projects"),
    path("projects/<int:project_id>/", views.project, name="project"),
    path("projects/<int:project_id>/deployments/<int:deployment_id>/", views.deployment, name="deployment"),
    path("projects/<int:project_id>/recordings/<int:recording_id>/", views.recording, name="recording"),
    path("projects/<int:project_id>/search/", views.search, name="search"),
    path("projects/<int:project_id>/classifiers/<int:classifier_id>/", views.classifier, name="classifier"),
    path("projects/<int:project_id>/runs/<int:run_id>/", views.run, name="run"),
]
