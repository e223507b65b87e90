from django.urls import path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from annotations.api import uploads as u
from annotations.api import views as v

P = "projects/<id:project_id>/"

urlpatterns = [
    # The API's address on its own leads to its reference, not to a 404.
    path("", RedirectView.as_view(pattern_name="api:docs"), name="root"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", v.ApiDocsView.as_view(url_name="api:schema"), name="docs"),
    path("token/", v.TokenView.as_view(), name="token"),
    path("projects/", v.ProjectListView.as_view(), name="project-list"),
    path(P, v.ProjectDetailView.as_view(), name="project-detail"),
    path(P + "members/", v.MemberListView.as_view(), name="member-list"),
    path(P + "members/<id:member_id>/", v.MemberDetailView.as_view(), name="member-detail"),
    path(P + "invitations/", v.ProjectInvitationListView.as_view(), name="project-invitation-list"),
    path(P + "invitations/<id:invitation_id>/", v.ProjectInvitationDetailView.as_view(), name="project-invitation"),
    path(P + "invitation-links/", v.ProjectInvitationLinkListView.as_view(), name="project-invitation-link-list"),
    path(
        P + "invitation-links/<id:link_id>/",
        v.ProjectInvitationLinkDetailView.as_view(),
        name="project-invitation-link",
    ),
    path("invitations/", v.MyInvitationListView.as_view(), name="invitation-list"),
    path("invitations/<id:invitation_id>/", v.MyInvitationDetailView.as_view(), name="invitation-detail"),
    path(P + "labels/", v.LabelListView.as_view(), name="label-list"),
    path(P + "labels/<id:label_id>/", v.LabelDetailView.as_view(), name="label-detail"),
    path(P + "deployments/", v.DeploymentListView.as_view(), name="deployment-list"),
    path(P + "deployments/metadata-import/", v.DeploymentMetadataImportView.as_view(), name="deployment-metadata"),
    path(P + "deployments/<id:deployment_id>/", v.DeploymentDetailView.as_view(), name="deployment-detail"),
    path(P + "deployments/<id:deployment_id>/files/", v.DeploymentFilesView.as_view(), name="deployment-files"),
    path(P + "deployments/<id:deployment_id>/uploads/", u.UploadListView.as_view(), name="upload-list"),
    path(
        P + "deployments/<id:deployment_id>/uploads/<id:upload_id>/", u.UploadDetailView.as_view(), name="upload-detail"
    ),
    path(P + "deployments/<id:deployment_id>/ingest/", v.DeploymentIngestView.as_view(), name="deployment-ingest"),
    path(P + "deployments/<id:deployment_id>/reembed/", v.DeploymentReembedView.as_view(), name="deployment-reembed"),
    path(P + "deployments/<id:deployment_id>/recordings/", v.RecordingListView.as_view(), name="recording-list"),
    path(P + "deployments/<id:deployment_id>/label-import/", v.LabelImportView.as_view(), name="label-import"),
    path(P + "label-imports/<id:import_id>/", v.LabelImportDetailView.as_view(), name="label-import-detail"),
    path(P + "recordings/<id:recording_id>/", v.RecordingDetailView.as_view(), name="recording-detail"),
    path(P + "recordings/<id:recording_id>/windows/", v.WindowListView.as_view(), name="window-list"),
    path(P + "recordings/<id:recording_id>/audio/", v.RecordingAudioView.as_view(), name="recording-audio"),
    path(P + "windows/<id:window_id>/audio/", v.WindowAudioView.as_view(), name="window-audio"),
    path(P + "windows/<id:window_id>/spectrogram.png", v.WindowSpectrogramView.as_view(), name="window-spectrogram"),
    path(
        P + "recordings/<id:recording_id>/spectrogram.png",
        v.RecordingSpectrogramView.as_view(),
        name="recording-spectrogram",
    ),
    path(P + "recordings/<id:recording_id>/overview.png", v.RecordingOverviewView.as_view(), name="recording-overview"),
    path(P + "windows/<id:window_id>/history/", v.WindowHistoryView.as_view(), name="window-history"),
    path(P + "search/", v.SearchView.as_view(), name="search"),
    path(P + "maps/", v.EmbeddingMapListView.as_view(), name="map-list"),
    path(P + "maps/<id:map_id>/", v.EmbeddingMapDetailView.as_view(), name="map-detail"),
    path(P + "maps/<id:map_id>/points/", v.MapPointsView.as_view(), name="map-points"),
    path(P + "clip-queries/", v.ClipQueryListView.as_view(), name="clip-query-list"),
    path(P + "region-queries/", v.RegionQueryView.as_view(), name="region-query-list"),
    path(P + "clip-queries/<id:clip_query_id>/", v.ClipQueryDetailView.as_view(), name="clip-query-detail"),
    path(P + "annotations/", v.AnnotationListView.as_view(), name="annotation-list"),
    path(P + "annotations/bulk/", v.AnnotationBulkView.as_view(), name="annotation-bulk"),
    path(P + "annotations/restore/", v.AnnotationRestoreView.as_view(), name="annotation-restore"),
    path(P + "annotations/resolve/", v.ConflictResolveView.as_view(), name="annotation-resolve"),
    path(P + "classifiers/", v.ClassifierListView.as_view(), name="classifier-list"),
    path(P + "classifiers/<id:classifier_id>/", v.ClassifierDetailView.as_view(), name="classifier-detail"),
    path(P + "classifiers/<id:classifier_id>/export/", v.ClassifierExportView.as_view(), name="classifier-export"),
    path(P + "classifiers/<id:classifier_id>/runs/", v.InferenceRunListView.as_view(), name="run-list"),
    path(P + "classifiers/<id:classifier_id>/threshold/", v.ClassifierThresholdView.as_view(), name="threshold"),
    path(P + "classifiers/<id:classifier_id>/queue/", v.ReviewQueueView.as_view(), name="review-queue"),
    path(
        P + "classifiers/<id:classifier_id>/queue-suggestion/",
        v.QueueSuggestionView.as_view(),
        name="queue-suggestion",
    ),
    path(P + "runs/<id:run_id>/", v.InferenceRunDetailView.as_view(), name="run-detail"),
    path(P + "runs/<id:run_id>/detections/", v.DetectionListView.as_view(), name="detection-list"),
    path(P + "runs/<id:run_id>/detections.csv", v.DetectionCsvView.as_view(), name="detection-csv"),
    path(P + "runs/<id:run_id>/raven.zip", v.RavenExportView.as_view(), name="raven-export"),
    path(P + "runs/<id:run_id>/summary/", v.RunSummaryView.as_view(), name="run-summary"),
    path(P + "runs/<id:run_id>/density/", v.RunDensityView.as_view(), name="run-density"),
    path(P + "hoplite-imports/", v.HopliteImportListView.as_view(), name="hoplite-import-list"),
    path(P + "hoplite-imports/<id:hoplite_import_id>/", v.HopliteImportDetailView.as_view(), name="hoplite-import"),
    path(P + "hoplite-exports/", v.HopliteExportListView.as_view(), name="hoplite-export-list"),
    path(P + "hoplite-exports/<id:hoplite_export_id>/", v.HopliteExportDetailView.as_view(), name="hoplite-export"),
    path(
        P + "hoplite-exports/<id:hoplite_export_id>/download/",
        v.HopliteExportDownloadView.as_view(),
        name="hoplite-export-download",
    ),
]
