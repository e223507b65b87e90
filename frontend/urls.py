from django.urls import path

from frontend import account_views, views

app_name = "frontend"

P = "projects/<id:project_id>/"

urlpatterns = [
    path("", views.projects, name="projects"),
    path("account/", account_views.account, name="account"),
    path("join/<str:token>/", views.join, name="join"),
    path(P, views.project, name="project"),
    path(P + "settings/", views.project_settings, name="project-settings"),
    path(P + "deployments/metadata/", views.deployment_metadata_import, name="deployment-metadata"),
    path(P + "deployments/<id:deployment_id>/", views.deployment, name="deployment"),
    path(P + "recordings/<id:recording_id>/", views.recording, name="recording"),
    path(P + "windows/<id:window_id>/", views.window, name="window"),
    path(P + "search/", views.search, name="search"),
    path(P + "map/", views.map_page, name="map"),
    path(P + "windows/", views.window_selection, name="selection"),
    path(P + "labels/<id:label_id>/", views.label_review, name="label-review"),
    path(P + "classifiers/<id:classifier_id>/", views.classifier, name="classifier"),
    path(P + "classifiers/<id:classifier_id>/review/", views.review, name="review"),
    path(P + "runs/<id:run_id>/", views.run, name="run"),
]
